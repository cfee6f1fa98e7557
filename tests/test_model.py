"""Our Flax BERT against transformers' PyTorch BertModel (the reference), fp32, eval mode."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dpr_jax.models.hf import load_hf_encoder
from dpr_jax.models.bert import Bert, BertConfig, Encoder, pool

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    "Who got the first Nobel Prize in physics?",
    "Antarctica, on average, is the coldest, driest, and windiest continent, and has the highest "
    "average elevation of all the continents.",
    "Paris",
    "The Normans were the people who in the 10th and 11th centuries gave their name to "
    "Normandy, a region in France. They were descended from Norse raiders and pirates from "
    "Denmark, Iceland and Norway.",
]


def _reference(model_dir, batch):
  tm = transformers.BertModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()
  with torch.no_grad():
    out = tm(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
             attention_mask=torch.tensor(batch["attention_mask"], dtype=torch.long))
  return out.last_hidden_state.numpy()


def _batch(model_dir):
  tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  b = tok(SENTENCES, padding=True, return_tensors="np")
  assert b["attention_mask"].min() == 0  # the batch really is padded
  return {k: b[k].astype(np.int32) for k in ("input_ids", "attention_mask")}


def _check_equal(model_dir, pooling):
  batch = _batch(model_dir)
  ref = _reference(model_dir, batch)
  enc = load_hf_encoder(model_dir, pooling=pooling)
  ours = np.asarray(enc.bert(jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])))
  real = batch["attention_mask"].astype(bool)
  # Padding positions carry no information (every real token ignores them), so the comparison
  # is over real tokens.
  assert np.abs(ours - ref)[real].max() <= 1e-4
  emb = np.asarray(enc(jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])))
  m = batch["attention_mask"][..., None]
  ref_emb = ref[:, 0] if pooling == "cls" else (ref * m).sum(1) / m.sum(1)
  assert np.abs(emb - ref_emb).max() <= 1e-4


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_minilm_equals_pytorch(minilm_path, pooling):
  _check_equal(minilm_path, pooling)


@pytest.fixture(scope="module")
def random_bert_base(tmp_path_factory):
  """A randomly initialised bert-base-sized BertModel saved as a Hugging Face directory.

  LayerNorm scales/biases are randomised too, so a wrong parameter mapping cannot hide behind
  the identity initialisation.
  """
  torch.manual_seed(0)
  model = transformers.BertModel(transformers.BertConfig(), add_pooling_layer=False).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "LayerNorm" in name:
        p.add_(0.1 * torch.randn_like(p))
  d = tmp_path_factory.mktemp("bert_base")
  model.save_pretrained(d)
  return d


def test_random_bert_base_equals_pytorch(random_bert_base, minilm_path):
  # Same uncased WordPiece vocabulary as bert-base-uncased.
  import shutil
  for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(minilm_path / f, random_bert_base / f)
  _check_equal(random_bert_base, "cls")


def _tiny(**kw):
  return BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64, **kw)


def _inputs(b=3, l=12, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, 101, size=(b, l)).astype(np.int32)
  mask = np.ones((b, l), np.int32)
  mask[1, 7:] = 0
  mask[2, 3:] = 0
  return jnp.asarray(ids), jnp.asarray(mask)


def test_dropout_attention_path_matches_fused_path():
  """The einsum attention used under dropout computes the same function as the fused one."""
  cfg = _tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=1e-12)
  bert = Bert(cfg, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  fused = bert(ids, mask)
  einsum = bert(ids, mask, dropout_rng=jax.random.key(1))
  np.testing.assert_allclose(np.asarray(einsum)[np.asarray(mask) > 0],
                             np.asarray(fused)[np.asarray(mask) > 0], atol=1e-5)


def test_dropout_is_deterministic_in_its_key():
  bert = Bert(_tiny(), rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  a = bert(ids, mask, dropout_rng=jax.random.key(1))
  b = bert(ids, mask, dropout_rng=jax.random.key(1))
  c = bert(ids, mask, dropout_rng=jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_remat_gives_same_gradients():
  ids, mask = _inputs()

  # A linear read-out of the embeddings: a squared norm after LayerNorm would make most
  # gradients cancel to ~1e-7, leaving only rounding noise to compare.
  w = jax.random.normal(jax.random.key(9), (3, 32))

  def grads(remat):
    enc = Encoder(_tiny(), remat=remat, rngs=nnx.Rngs(0))
    loss = lambda m: (m(ids, mask, dropout_rng=jax.random.key(3)) * w).sum()
    return nnx.state(nnx.grad(loss)(enc))

  g0, g1 = grads(False), grads(True)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-5 * max(np.abs(a).max(), 1.0)


def test_bf16_compute_keeps_fp32_params():
  ids, mask = _inputs()
  e32 = Encoder(_tiny(), rngs=nnx.Rngs(0))
  e16 = Encoder(_tiny(), dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(e16, nnx.Param)))
  a, b = np.asarray(e32(ids, mask)), np.asarray(e16(ids, mask))
  assert b.dtype == np.float32
  cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  assert cos.min() > 0.99


def test_pooling_by_hand():
  h = jnp.asarray(np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2))
  mask = jnp.asarray([[1, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(pool(h, mask, "cls"), [[0, 1], [6, 7]])
  np.testing.assert_allclose(pool(h, mask, "mean"), [[1, 2], [8, 9]])
  with pytest.raises(ValueError, match="pooling"):
    pool(h, mask, "max")


def test_projection_and_logical_axes():
  enc = Encoder(_tiny(), projection_dim=8, rngs=nnx.Rngs(0))
  ids, mask = _inputs()
  assert enc(ids, mask).shape == (3, 8) and enc.dim == 8
  for path, var in nnx.to_flat_state(nnx.state(enc, nnx.Param)):
    axes = var.get_metadata().get("logical_axes")
    assert axes is not None and len(axes) == var.get_value().ndim, path


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention exists on GPUs only")
def test_gpu_cudnn_attention_matches_xla_attention():
  """On a GPU in bf16 the fused path is cuDNN flash attention given sequence lengths; it must
  give the embeddings of XLA's masked attention on a right-padded batch."""
  cfg = BertConfig(num_hidden_layers=2, hidden_dropout_prob=0.0)
  enc = Encoder(cfg, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  lengths = rng.integers(5, 129, 16)
  mask = (np.arange(128)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1000, cfg.vocab_size, (16, 128)).astype(np.int32) * mask
  f = jax.jit(lambda i, m: enc(i, m))
  assert "cudnn" in f.lower(ids, mask).as_text().lower()  # the fused kernel, not a fallback
  ours = np.asarray(f(ids, mask))
  xla = Encoder(cfg, dtype=jnp.bfloat16, attention="xla", rngs=nnx.Rngs(0))  # same parameters
  ref = np.asarray(jax.jit(lambda i, m: xla(i, m))(ids, mask))
  assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 2e-2


def test_deferred_softmax_attention_equals_softmax_attention_with_and_without_dropout():
  """exp(s - max) @ v / rowsum is softmax(s) @ v; with dropout, the mask applied to the
  unnormalised weights equals the mask applied to the probabilities (same key, same bits)."""
  from dpr_jax.models.bert import deferred_softmax_attention, dropout
  r = np.random.default_rng(0)
  q, k, v = (jnp.asarray(r.standard_normal((3, 9, 2, 4)), jnp.float32) for _ in range(3))
  mask = jnp.asarray((np.arange(9)[None] < np.array([9, 5, 1])[:, None]).astype(np.int32))
  ref = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :].astype(bool))
  np.testing.assert_allclose(np.asarray(deferred_softmax_attention(q, k, v, mask)),
                             np.asarray(ref), atol=1e-6)
  key = jax.random.key(3)
  s = jnp.einsum("bqnd,bknd->bnqk", q, k) / 2.0
  s = jnp.where(mask[:, None, None, :] > 0, s, jnp.finfo(jnp.float32).min)
  ref_drop = jnp.einsum("bnqk,bknd->bqnd", dropout(jax.nn.softmax(s, -1), 0.3, key), v)
  np.testing.assert_allclose(np.asarray(deferred_softmax_attention(q, k, v, mask, 0.3, key)),
                             np.asarray(ref_drop), atol=1e-5)


def test_dropout_rate_scale_and_independence():
  """Against the definition: an element is dropped with probability round(rate * 65536) / 65536,
  kept ones are scaled by exactly 1 / (1 - that), and drops at nearby positions (which share a
  threefry block) are uncorrelated; one key or per-example keys alike."""
  from dpr_jax.models.bert import dropout, example_keys
  x = jnp.ones((4, 512, 130))
  for rate, rng in ((0.1, example_keys(jax.random.key(0), jnp.arange(4))),
                    (0.5, jax.random.key(1))):
    p = round(rate * 65536) / 65536
    y = np.asarray(dropout(x, rate, rng))
    dropped = y == 0
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / y.size)
    np.testing.assert_allclose(y[~dropped], 1 / (1 - p), rtol=1e-6)
    d = dropped.reshape(-1).astype(np.float64)
    for lag in (1, 2, 3, 4, 130):
      assert abs(np.corrcoef(d[:-lag], d[lag:])[0, 1]) < 4 / np.sqrt(d.size)
  # Different examples' masks differ (per-example keys are not one key repeated).
  y = np.asarray(dropout(x, 0.1, example_keys(jax.random.key(0), jnp.arange(4))))
  assert (y[0] != y[1]).any()
