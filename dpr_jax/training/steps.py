"""The optimizer and the compiled steps: training, validation loss, and encoding.

State is a plain pytree `{params, opt_state, step, rng}` (params as nnx's pure dict) so that it
jits, shards and checkpoints without framework wrappers. Steps take explicit arguments, never the
config.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dpr_jax.data import buckets
from dpr_jax.training import sharding
from dpr_jax.training.loss import in_batch_nll
from dpr_jax.models.bert import example_keys


def decay_mask(params):
  """Weight decay on matrices (kernels, embeddings); not on biases or LayerNorm (DPR / BERT)."""
  def leaf_mask(path, _):
    return getattr(path[-1], "key", None) in ("kernel", "embedding")
  return jax.tree_util.tree_map_with_path(leaf_mask, params)


def make_schedule(lr: float, warmup_steps: int, total_steps: int):
  """Linear warm-up to `lr`, then linear decay to 0 at `total_steps` (DPR's schedule)."""
  warmup_steps = max(0, min(warmup_steps, total_steps))
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, max(warmup_steps, 1)),
       optax.linear_schedule(lr, 0.0, max(total_steps - warmup_steps, 1))], [warmup_steps])


def make_optimizer(schedule, *, weight_decay: float, clip_norm: float, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8):
  """Clip by global norm, then AdamW with the decay mask."""
  parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts)


def init_state(params, tx, seed: int) -> dict:
  """Jit it with `out_shardings=sharding.state_shardings(...)` (see `place_state`)."""
  return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
          "rng": jax.random.key_data(jax.random.key(seed))}


def place_state(params, tx, seed: int, mesh, param_shardings_tree):
  """-> (state laid out on `mesh`, its shardings): the optimizer state sharded like the params."""
  shape = jax.eval_shape(lambda p: init_state(p, tx, seed), params)
  shardings = sharding.state_shardings(shape, param_shardings_tree, mesh)
  return jax.jit(lambda p: init_state(p, tx, seed), out_shardings=shardings)(params), shardings


def _side_keys(key):
  return (None, None) if key is None else tuple(jax.random.split(key))


def _encode(graphdef, params, side, ids, mask, key, index):
  """One side of the dual encoder on [b, L] ids/mask; `index`: [b] global example positions,
  from which the per-example dropout keys are derived."""
  model = nnx.merge(graphdef, params)
  enc = model.question if side == "q" else model.passage
  rng = None if key is None else example_keys(key, index)
  return enc(ids, mask, dropout_rng=rng)


def _questions(graphdef, params, batch, key):
  """[B, D] question embeddings; a batch of question groups (`buckets.group_questions`) is
  encoded group by group, each at its own length, and the groups concatenated in order."""
  out, start = [], 0
  for ids, mask in buckets.question_groups(batch):
    out.append(_encode(graphdef, params, "q", ids, mask, key, start + jnp.arange(ids.shape[0])))
    start += ids.shape[0]
  return out[0] if len(out) == 1 else jnp.concatenate(out)


def make_loss_fn(mesh, *, similarity: str, temperature: float):
  """-> loss_fn(q, p, p_key=None) -> `in_batch_nll`'s outputs: the global in-batch loss of
  batch-sharded embeddings (and passage keys) under shard_map on `mesh`."""
  nll = functools.partial(in_batch_nll, similarity=similarity, temperature=temperature)
  with_keys = sharding.gathered_loss(
      lambda q, pk, axis_name: nll(q, pk[0], pk[1], axis_name=axis_name), mesh)
  without = sharding.gathered_loss(nll, mesh)
  return lambda q, p, p_key=None: without(q, p) if p_key is None else with_keys(q, (p, p_key))


def _apply_loss(loss_fn, q, p, batch):
  """loss_fn(q, p) of a batch without passage keys, loss_fn(q, p, p_key) of one with them."""
  return loss_fn(q, p) if "p_key" not in batch else loss_fn(q, p, batch["p_key"])


def _dual_loss(graphdef, params, batch, key, loss_fn):
  kq, kp = _side_keys(key)
  q = _questions(graphdef, params, batch, kq)
  p = _encode(graphdef, params, "p", batch["p_ids"], batch["p_mask"], kp,
              jnp.arange(batch["p_ids"].shape[0]))
  out = _apply_loss(loss_fn, q, p, batch)
  return out["loss"], out


def make_loss_and_grads(graphdef, mesh, loss_fn, grad_cache_chunk: int = 0):
  """-> f(params, batch, key) -> ((loss, loss outputs), grads). `loss_fn`: `make_loss_fn`'s,
  given the batch's `p_key` when it has one.

  `grad_cache_chunk` = 0: one backward pass through the whole global batch. N > 0: gradient
  caching (Gao et al., 2021). Pass 1 encodes the batch in micro-batches of N questions (and their
  N*(1+H) passages) per device, keeping no activations; the sharded in-batch loss gives the
  gradient with respect to every embedding; pass 2 re-encodes each micro-batch with the same
  per-example dropout keys and back-propagates its slice of those cached gradients. Loss and
  gradients equal the direct ones up to summation order, with activation memory of one
  micro-batch instead of the whole batch.
  """
  if not grad_cache_chunk:
    return lambda params, batch, key: jax.value_and_grad(_dual_loss, argnums=1, has_aux=True)(
        graphdef, params, batch, key, loss_fn)

  def sides(batch, key):
    if "q_ids" not in batch:
      raise ValueError("question groups (data.question_groups > 1) do not combine with "
                       "gradient caching (train.grad_cache_chunk > 0)")
    kq, kp = _side_keys(key)
    for side, k, ids, mask in (("q", kq, batch["q_ids"], batch["q_mask"]),
                               ("p", kp, batch["p_ids"], batch["p_mask"])):
      per_device = ids.shape[0] // sharding.batch_size_multiple(mesh)
      chunk = grad_cache_chunk * (ids.shape[0] // batch["q_ids"].shape[0])
      if per_device % chunk:
        raise ValueError(f"grad_cache_chunk={grad_cache_chunk}: {per_device} examples per "
                         f"device on the {side} side do not split into sub-batches of {chunk}")
      n = per_device // chunk
      split = lambda x: sharding.split_microbatches(x, mesh, n)
      yield side, k, (split(ids), split(mask), split(jnp.arange(ids.shape[0])))

  def f(params, batch, key):
    embs, chunks = {}, {}
    for side, k, xs in sides(batch, key):
      # Pass 1: lax.map runs the micro-batches one after another; nothing is differentiated
      # here, so no activations are kept.
      e = jax.lax.map(lambda c, side=side, k=k: _encode(graphdef, params, side, *c[:2], k, c[2]),
                      xs)
      embs[side] = sharding.merge_microbatches(e, mesh)
      chunks[side] = (k, xs, e.shape[0])
    def emb_loss(q, p):
      o = _apply_loss(loss_fn, q, p, batch)
      return o["loss"], o
    grad_emb = jax.value_and_grad(emb_loss, argnums=(0, 1), has_aux=True)
    (loss, out), (dq, dp) = grad_emb(embs["q"], embs["p"])

    # Pass 2: re-encode each micro-batch and pull its cached embedding gradients back to the
    # parameters, summing over micro-batches.
    grads = jax.tree.map(jnp.zeros_like, params)
    for side, g in (("q", dq), ("p", dp)):
      k, xs, n = chunks[side]

      def body(acc, c, side=side, k=k):
        ids, mask, index, g_c = c
        _, vjp = jax.vjp(lambda prm: _encode(graphdef, prm, side, ids, mask, k, index), params)
        return jax.tree.map(jnp.add, acc, vjp(g_c)[0]), None
      grads, _ = jax.lax.scan(body, grads, (*xs, sharding.split_microbatches(g, mesh, n)))
    return (loss, out), grads

  return f


def make_train_step(graphdef, tx, schedule, mesh, *, similarity: str, temperature: float,
                    grad_cache_chunk: int = 0, state_shardings=None):
  """-> step(state, batch) -> (state, metrics). Batch: `data.examples.global_batch_arrays`'s
  ({q_ids, q_mask: [B, Lq], p_ids, p_mask: [B*(1+H), Lp], p_key: [B*(1+H)]}; without `p_key`
  nothing is masked), batch-sharded. A non-finite loss leaves params and optimizer
  state unchanged (the step counter still advances) so that the host can stop on the next check
  with the last good parameters intact. `grad_cache_chunk`: see `make_loss_and_grads`.
  `state_shardings` (`sharding.state_shardings`) pins the output state's layout."""
  loss_fn = make_loss_fn(mesh, similarity=similarity, temperature=temperature)
  loss_and_grads = make_loss_and_grads(graphdef, mesh, loss_fn, grad_cache_chunk)

  def metrics(loss, out, grads):
    return {"train/loss": loss, "train/accuracy": out["accuracy"],
            "train/grad_norm": optax.tree.norm(grads),
            "train/masked_negatives": out["masked"]}

  return make_update_step(loss_and_grads, tx, schedule, mesh, metrics, state_shardings)


def make_update_step(loss_and_grads, tx, schedule, mesh, metrics_fn, state_shardings=None):
  """The optimizer step shared by the retriever and the reader: -> jitted step(state, batch) ->
  (state, metrics). `loss_and_grads(params, batch, key) -> ((loss, aux), grads)`, the key folded
  from the state's RNG and step; `metrics_fn(loss, aux, grads) -> dict`. A non-finite loss leaves
  params and optimizer state unchanged (the step counter still advances). The state is donated
  and, with `state_shardings`, returned in the layout it came in (one compilation)."""
  def step(state, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    (loss, aux), grads = loss_and_grads(state["params"], batch, key)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    finite = jnp.isfinite(loss)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new = {"params": keep(params, state["params"]),
           "opt_state": keep(opt_state, state["opt_state"]),
           "step": state["step"] + 1, "rng": state["rng"]}
    return new, {**metrics_fn(loss, aux, grads), "train/lr": schedule(state["step"])}

  out = None if state_shardings is None else (state_shardings, sharding.replicated(mesh))
  return jax.jit(step, donate_argnums=0, out_shardings=out)


def make_eval_loss(graphdef, mesh, *, similarity: str, temperature: float):
  """-> f(params, batch) -> {loss, accuracy, count}: in-batch NLL without dropout."""
  loss_fn = make_loss_fn(mesh, similarity=similarity, temperature=temperature)
  return jax.jit(lambda params, batch: _dual_loss(graphdef, params, batch, None, loss_fn)[1])


def make_encode(graphdef, side: str):
  """-> f(params, ids, mask) -> [B, D] fp32 embeddings, `side` in {question, passage}."""
  def f(params, ids, mask):
    model = nnx.merge(graphdef, params)
    enc = model.question if side == "question" else model.passage
    return enc(ids, mask)
  return jax.jit(f)
