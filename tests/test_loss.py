"""DPR's in-batch loss: a hand-worked case, and the sharded loss against the unsharded one."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dpr_jax.training import sharding, steps
from dpr_jax.training.loss import in_batch_nll, positive_ranks, scores
from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder


def test_two_questions_by_hand():
  # 2 questions, 1 hard negative each: passages [pos0, hn0, pos1, hn1].
  q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  p = jnp.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
  # q0 scores [2, 1, 0, 0] -> positive 2; q1 scores [0, 0, 1, 3] -> positive 1.
  l0 = math.log(math.e ** 2 + math.e + 2) - 2
  l1 = math.log(2 + math.e + math.e ** 3) - 1
  out = in_batch_nll(q, p)
  assert abs(float(out["loss"]) - (l0 + l1) / 2) < 1e-6
  assert float(out["accuracy"]) == 0.5  # q1's hard negative outscored its positive
  assert float(out["count"]) == 2


def test_cosine_with_temperature_by_hand():
  q = jnp.array([[3.0, 4.0]])
  p = jnp.array([[6.0, 8.0], [4.0, -3.0]])  # cosines 1 and 0
  s = scores(q, p, "cosine", 0.5)
  np.testing.assert_allclose(np.asarray(s), [[2.0, 0.0]], atol=1e-6)
  out = in_batch_nll(q, p, similarity="cosine", temperature=0.5)
  assert abs(float(out["loss"]) - (math.log(math.e ** 2 + 1) - 2)) < 1e-6


def test_positive_ranks_ties_count_against():
  s = jnp.array([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
  assert list(np.asarray(positive_ranks(s, jnp.array([2, 0])))) == [1, 1]


def _tiny_model(tied):
  cfg = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=32)
  q = Encoder(cfg, projection_dim=16, rngs=nnx.Rngs(0))
  return DualEncoder(q, None if tied else Encoder(cfg, projection_dim=16, rngs=nnx.Rngs(1)))


def _batch(b=16, h=2, lq=8, lp=12, seed=0):
  rng = np.random.default_rng(seed)
  mask = lambda n, l: (np.arange(l)[None] < rng.integers(3, l + 1, size=(n, 1))).astype(np.int32)
  return {"q_ids": rng.integers(1, 97, (b, lq)).astype(np.int32), "q_mask": mask(b, lq),
          "p_ids": rng.integers(1, 97, (b * (1 + h), lp)).astype(np.int32),
          "p_mask": mask(b * (1 + h), lp)}


def _loss_and_grads(mesh, tied, similarity, key):
  graphdef, state = nnx.split(_tiny_model(tied))
  params = nnx.to_pure_dict(state)
  batch = _batch()
  if mesh is not None:
    params = jax.device_put(params, nnx.to_pure_dict(sharding.param_shardings(state, mesh)))
    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
    loss_fn = sharding.gathered_loss(
        functools.partial(in_batch_nll, similarity=similarity, temperature=0.1), mesh)
  else:
    loss_fn = functools.partial(in_batch_nll, similarity=similarity, temperature=0.1)
  f = jax.jit(jax.value_and_grad(
      lambda p: steps._dual_loss(graphdef, p, batch, key, loss_fn)[0]))
  loss, grads = f(params)
  return float(loss), jax.device_get(grads)


@pytest.mark.parametrize("tied,similarity,fsdp,dropout", [
    (False, "dot", 1, True), (True, "cosine", 2, True)])
def test_sharded_equals_unsharded(tied, similarity, fsdp, dropout):
  """On all devices (8 fake CPU devices in CI): the loss of the global batch and its gradients
  equal the single-device computation of the same batch."""
  n = len(jax.devices())
  if n < 2:
    pytest.skip("needs several devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  key = jax.random.key(7) if dropout else None
  mesh = sharding.make_mesh(fsdp=fsdp)
  one = sharding.make_mesh(devices=jax.devices()[:1])
  l_ref, g_ref = _loss_and_grads(None, tied, similarity, key)
  l_one, g_one = _loss_and_grads(one, tied, similarity, key)
  l_all, g_all = _loss_and_grads(mesh, tied, similarity, key)
  assert abs(l_one - l_ref) <= 1e-5 * abs(l_ref)
  assert abs(l_all - l_ref) <= 1e-5 * abs(l_ref)
  num = sum(float(np.sum((np.asarray(a) - np.asarray(b)) ** 2))
            for a, b in zip(jax.tree.leaves(g_all), jax.tree.leaves(g_ref)))
  den = sum(float(np.sum(np.asarray(b) ** 2)) for b in jax.tree.leaves(g_ref))
  assert math.sqrt(num / den) <= 1e-5
  for a, b in zip(jax.tree.leaves(g_all), jax.tree.leaves(g_ref)):
    assert np.abs(a - b).max() <= 1e-5 * max(np.abs(b).max(), 1e-3)
