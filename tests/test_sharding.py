import jax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from dpr_jax.training import sharding
from dpr_jax.models.bert import BertConfig, Encoder


def test_fsdp_shards_embed_dimension_and_batch_over_all_devices():
  n = len(jax.devices())
  if n < 4:
    pytest.skip("needs 4+ devices")
  mesh = sharding.make_mesh(fsdp=2)
  assert dict(mesh.shape) == {sharding.DATA: n // 2, sharding.FSDP: 2}
  enc = Encoder(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32,
                           max_position_embeddings=16), rngs=nnx.Rngs(0))
  sh = nnx.to_pure_dict(sharding.param_shardings(nnx.state(enc), mesh))
  assert sh["bert"]["word_embeddings"]["embedding"].spec == P(None, sharding.FSDP)
  assert sh["bert"]["layers"][0]["intermediate"]["kernel"].spec == P(sharding.FSDP)  # trailing None dropped
  assert sh["bert"]["layers"][0]["output"]["bias"].spec == P(sharding.FSDP)
  assert sharding.batch_sharding(mesh).spec == P(sharding.BATCH)
  with pytest.raises(ValueError, match="must divide"):
    sharding.make_mesh(fsdp=3 if n % 3 else 5)
