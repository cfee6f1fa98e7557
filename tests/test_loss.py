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


def numpy_masked_nll(q, p, keys, per_q):
  """The in-batch NLL by hand, each question's row with the other copies of its positive
  (same key, other column) removed: -> (loss, accuracy, removed columns)."""
  q, p, keys = np.asarray(q, np.float64), np.asarray(p, np.float64), np.asarray(keys)
  losses, correct, removed = [], [], 0
  for i in range(len(q)):
    t = i * per_q
    keep = [c for c in range(len(p)) if c == t or keys[c] != keys[t]]
    removed += len(p) - len(keep)
    s = p[keep] @ q[i]
    pos = s[keep.index(t)]
    losses.append(np.log(np.exp(s - s.max()).sum()) + s.max() - pos)
    correct.append(float((s >= pos).sum() == 1))
  return float(np.mean(losses)), float(np.mean(correct)), removed


def test_a_copy_of_the_positive_is_no_negative_by_hand():
  # 2 questions, 1 hard negative each: passages [pos0, hn0, pos1, hn1]; hn1 is a copy of pos0
  # (a filler drawn from question 0's positive): for q0 it is masked, for q1 it stays a negative.
  q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  p = jnp.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
  keys = jnp.array([0, 1, 2, 0])
  # q0 scores [2, 1, 0, (2 masked)] -> positive 2; q1 scores [0, 0, 1, 0] -> positive 1.
  l0 = math.log(math.e ** 2 + math.e + 1) - 2
  l1 = math.log(3 + math.e) - 1
  out = in_batch_nll(q, p, keys)
  assert abs(float(out["loss"]) - (l0 + l1) / 2) < 1e-6
  assert float(out["accuracy"]) == 1.0 and float(out["masked"]) == 1
  # Without the keys the copy ties with q0's positive: q0 is counted wrong.
  assert float(in_batch_nll(q, p)["accuracy"]) == 0.5


def test_a_duplicated_example_is_not_floored_at_log_2():
  """An example drawn twice (weight > 1) with a positive its question scores far above every
  other passage: unmasked, each copy's positive ties with the other copy (loss >= log 2, both
  wrong); masked, the loss is that of the batch without the copy."""
  q = jnp.array([[10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
  p = jnp.array([[1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [0.0, -1.0]])
  keys = np.array([0, 1, 2, 3, 0, 1])  # example 0 twice: its positive and hard negative repeat
  plain = in_batch_nll(q, p)
  # two of the three questions tie their positive with the copy: >= log 2 each, both wrong
  assert float(plain["loss"]) >= 2 / 3 * math.log(2)
  assert abs(float(plain["accuracy"]) - 1 / 3) < 1e-6
  out = in_batch_nll(q, p, jnp.asarray(keys))
  want, acc, removed = numpy_masked_nll(q, p, keys, 2)
  assert abs(float(out["loss"]) - want) <= 2e-6  # fp32 at a loss near 0
  assert float(out["loss"]) < 1e-3 and float(out["accuracy"]) == acc == 1.0
  assert float(out["masked"]) == removed == 2


@pytest.mark.parametrize("n_devices", [1, 8])
def test_masked_loss_and_gradients_sharded(n_devices):
  """The global masked loss under shard_map equals the numpy loss without the copies' columns,
  with copies on other devices than their question; gradients equal the unsharded ones."""
  if jax.device_count() < n_devices:
    pytest.skip(f"needs {n_devices} devices")
  rng = np.random.default_rng(3)
  b, per_q = 16, 2
  q = rng.normal(size=(b, 4)).astype(np.float32)
  p = rng.normal(size=(b * per_q, 4)).astype(np.float32)
  keys = np.arange(b * per_q, dtype=np.int32)
  for src, dst in ((0, 30), (0, 6), (2, 28), (14, 16), (5, 9)):  # copies across devices
    p[dst], keys[dst] = p[src], keys[src]
  mesh = sharding.make_mesh(devices=jax.devices()[:n_devices])
  loss_fn = steps.make_loss_fn(mesh, similarity="dot", temperature=1.0)
  put = lambda x: jax.device_put(x, sharding.batch_sharding(mesh))
  f = jax.jit(jax.value_and_grad(lambda q, p, k: loss_fn(q, p, k)["loss"], argnums=(0, 1)))
  loss, (dq, dp) = f(put(q), put(p), put(keys))
  out = jax.jit(loss_fn)(put(q), put(p), put(keys))
  want, acc, removed = numpy_masked_nll(q, p, keys, per_q)
  assert abs(float(loss) - want) <= 1e-5 * want
  assert abs(float(out["accuracy"]) - acc) < 1e-6 and float(out["masked"]) == removed > 0
  ref = jax.grad(lambda q, p: in_batch_nll(q, p, jnp.asarray(keys))["loss"], argnums=(0, 1))
  rq, rp = ref(jnp.asarray(q), jnp.asarray(p))
  np.testing.assert_allclose(np.asarray(dq), np.asarray(rq), atol=1e-6)
  np.testing.assert_allclose(np.asarray(dp), np.asarray(rp), atol=1e-6)
  assert np.isfinite(np.asarray(dp)).all()
