"""Gradient caching against the direct gradient, and the per-example dropout it relies on."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dpr_jax.training import sharding, steps
from dpr_jax.training.loss import in_batch_nll
from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder, dropout, example_keys

CFG = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=32,
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _batch(b, per_q, lq=8, lp=16, seed=0):
  r = np.random.default_rng(seed)
  def side(n, l):
    lengths = r.integers(2, l + 1, n)
    mask = (np.arange(l)[None] < lengths[:, None]).astype(np.int32)
    return r.integers(1, CFG.vocab_size, (n, l)).astype(np.int32) * mask, mask
  q_ids, q_mask = side(b, lq)
  p_ids, p_mask = side(b * per_q, lp)
  return {"q_ids": q_ids, "q_mask": q_mask, "p_ids": p_ids, "p_mask": p_mask}


def _loss_and_grads(n_devices, chunk, tied, batch, key=7):
  mesh = sharding.make_mesh(devices=jax.devices()[:n_devices])
  q = Encoder(CFG, rngs=nnx.Rngs(0))
  model = DualEncoder(q, None if tied else Encoder(CFG, rngs=nnx.Rngs(1)))
  graphdef, state = nnx.split(model)
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  loss_fn = sharding.gathered_loss(lambda q, p, axis_name: in_batch_nll(
      q, p, similarity="cosine", temperature=0.1, axis_name=axis_name), mesh)
  f = jax.jit(steps.make_loss_and_grads(graphdef, mesh, loss_fn, chunk))
  (loss, _), grads = f(params, sharding.host_to_global(batch, mesh),
                       None if key is None else jax.random.key(key))
  return float(loss), grads


def _rel_err(a, b):
  a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)])
  b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)])
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("n_devices,chunk,tied", [(1, 2, False), (8, 1, True)])
def test_grad_cache_equals_direct_gradient_with_dropout(n_devices, chunk, tied):
  if jax.device_count() < n_devices:
    pytest.skip(f"needs {n_devices} devices")
  batch = _batch(8 if n_devices == 1 else 16, per_q=2)
  loss, grads = _loss_and_grads(n_devices, 0, tied, batch)
  loss_c, grads_c = _loss_and_grads(n_devices, chunk, tied, batch)
  assert abs(loss_c - loss) <= 1e-5 * abs(loss)
  assert _rel_err(grads_c, grads) <= 1e-5
  # Dropout is on: without it (no key) or with another key the loss and gradients differ, so
  # the equality above is not dropout switched off.
  loss_off, grads_off = _loss_and_grads(n_devices, 0, tied, batch, key=None)
  loss_other, _ = _loss_and_grads(n_devices, 0, tied, batch, key=8)
  assert abs(loss_off - loss) > 1e-3 * abs(loss) and abs(loss_other - loss) > 1e-3 * abs(loss)
  assert _rel_err(grads_off, grads) > 1e-2


def test_dropout_is_on_and_per_example_keys_do_not_depend_on_the_batch():
  x = jnp.ones((6, 5, 4))
  keys = example_keys(jax.random.key(0), jnp.arange(6))
  full = dropout(x, 0.5, keys)
  part = dropout(x[2:4], 0.5, example_keys(jax.random.key(0), jnp.arange(2, 4)))
  np.testing.assert_array_equal(np.asarray(full[2:4]), np.asarray(part))
  assert 0 < float((full == 0).mean()) < 1
  assert set(np.unique(np.asarray(full)).tolist()) == {0.0, 2.0}


def test_grad_cache_rejects_a_chunk_that_does_not_divide_the_batch():
  batch = _batch(6, per_q=2)
  with pytest.raises(ValueError, match="grad_cache_chunk=4"):
    _loss_and_grads(1, 4, False, batch)


def test_train_step_compiles_once_for_batches_of_different_texts(minilm_path):
  """Batches of very different text lengths tokenize to the same shapes, so the jitted step is
  traced and compiled once (no per-batch retracing), and its output state has the layout of its
  input state."""
  from dpr_jax.data.examples import Passage, tokenize_batch
  from dpr_jax.models.tokenization import Tokenizer
  tok = Tokenizer(minilm_path, 16, 32)
  cfg = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=32)
  n = 8 if jax.device_count() >= 8 else 1
  mesh = sharding.make_mesh(fsdp=2 if n == 8 else 1, devices=jax.devices()[:n])
  graphdef, state = nnx.split(DualEncoder(Encoder(cfg, rngs=nnx.Rngs(0))))
  schedule = optax.constant_schedule(1e-3)
  tx = steps.make_optimizer(schedule, weight_decay=0.0, clip_norm=1.0)
  # As train_lib lays the state out: parameters (and Adam's moments) sharded by logical axes.
  shard = nnx.to_pure_dict(sharding.param_shardings(state, mesh))
  params = jax.device_put(nnx.to_pure_dict(state), shard)
  st, st_shard = steps.place_state(params, tx, 0, mesh, shard)
  # With gradient caching on, which also checks its wiring into the train step.
  step = steps.make_train_step(graphdef, tx, schedule, mesh, similarity="dot", temperature=1.0,
                               grad_cache_chunk=1, state_shardings=st_shard)
  for words in (1, 7, 200):
    qs = [("why " * words).strip()] * 8
    ps = [Passage("t", "word " * (words * i + 1)) for i in range(16)]
    st, m = step(st, sharding.host_to_global(tokenize_batch(tok, qs, ps, 16, 32), mesh))
    assert np.isfinite(float(m["train/loss"]))
  assert step._cache_size() == 1
  # Adam's moments live where their parameters do (fsdp-sharded embed dimension).
  side = next(iter(st["params"]))  # the one shared encoder of a tied model
  emb = st["opt_state"][1][0].mu[side]["bert"]["word_embeddings"]["embedding"]
  assert emb.sharding.spec == st["params"][side]["bert"]["word_embeddings"]["embedding"].sharding.spec
  assert emb.sharding.spec != ()


def test_copies_of_positives_are_masked_with_grad_cache_and_question_groups():
  """A batch with an example drawn twice and a hard negative that is another question's
  positive: the masked loss of the direct step (all devices), of gradient caching and of
  question groups equals the numpy loss without the copies' columns, from the same embeddings;
  gradient caching's gradients equal the direct ones."""
  from test_loss import numpy_masked_nll
  from dpr_jax.data import buckets
  n = min(8, jax.device_count())
  b, per_q = 16, 2
  batch = _batch(b, per_q, seed=4)
  keys = np.arange(b * per_q, dtype=np.int32)
  for name in ("q_ids", "q_mask"):  # example 9 is example 0 again
    batch[name][9] = batch[name][0]
  for src, dst in ((0, 18), (1, 19), (6, 13)):  # ... and q6's hard negative is q3's positive
    for name in ("p_ids", "p_mask"):
      batch[name][dst] = batch[name][src]
    keys[dst] = keys[src]
  batch["p_key"] = keys
  graphdef, state = nnx.split(DualEncoder(Encoder(CFG, rngs=nnx.Rngs(0))))
  params = nnx.to_pure_dict(state)
  q = np.asarray(steps.make_encode(graphdef, "question")(params, batch["q_ids"], batch["q_mask"]))
  p = np.asarray(steps.make_encode(graphdef, "passage")(params, batch["p_ids"], batch["p_mask"]))
  want, _, removed = numpy_masked_nll(q, p, keys, per_q)
  assert removed == 3  # q0 and q9 each see the other's positive; q3 sees its copy at 13

  def run(devices, chunk, b_):
    mesh = sharding.make_mesh(devices=jax.devices()[:devices])
    loss_fn = steps.make_loss_fn(mesh, similarity="dot", temperature=1.0)
    f = jax.jit(steps.make_loss_and_grads(graphdef, mesh, loss_fn, chunk))
    (loss, out), grads = f(jax.device_put(params, sharding.replicated(mesh)),
                           sharding.host_to_global(b_, mesh), None)
    assert float(out["masked"]) == removed
    return float(loss), grads

  direct, g = run(n, 0, batch)
  cached, g_c = run(n, 1, batch)
  grouped, _ = run(n, 0, buckets.group_questions(batch, 2, per_q, 4, 8))
  for got in (direct, cached, grouped):
    assert abs(got - want) <= 1e-5 * want
  assert _rel_err(g_c, g) <= 1e-5
