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

from dpr_jax import sharding
from dpr_jax.loss import in_batch_nll


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
  return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
          "rng": jax.random.key_data(jax.random.key(seed))}


def _dual_loss(graphdef, params, batch, key, loss_fn):
  model = nnx.merge(graphdef, params)
  kq, kp = (None, None) if key is None else jax.random.split(key)
  q = model.encode_questions(batch["q_ids"], batch["q_mask"], dropout_rng=kq)
  p = model.encode_passages(batch["p_ids"], batch["p_mask"], dropout_rng=kp)
  out = loss_fn(q, p)
  return out["loss"], out


def make_train_step(graphdef, tx, schedule, mesh, *, similarity: str, temperature: float):
  """-> step(state, batch) -> (state, metrics). Batch: {q_ids, q_mask: [B, Lq],
  p_ids, p_mask: [B*(1+H), Lp]}, batch-sharded. A non-finite loss leaves params and optimizer
  state unchanged (the step counter still advances) so that the host can stop on the next check
  with the last good parameters intact."""
  loss_fn = sharding.gathered_loss(
      functools.partial(in_batch_nll, similarity=similarity, temperature=temperature), mesh)

  def step(state, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    grad_fn = jax.value_and_grad(_dual_loss, argnums=1, has_aux=True)
    (loss, out), grads = grad_fn(graphdef, state["params"], batch, key, loss_fn)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    finite = jnp.isfinite(loss)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new = {"params": keep(params, state["params"]),
           "opt_state": keep(opt_state, state["opt_state"]),
           "step": state["step"] + 1, "rng": state["rng"]}
    metrics = {"train/loss": loss, "train/accuracy": out["accuracy"],
               "train/grad_norm": optax.global_norm(grads), "train/lr": schedule(state["step"])}
    return new, metrics

  return jax.jit(step, donate_argnums=0)


def make_eval_loss(graphdef, mesh, *, similarity: str, temperature: float):
  """-> f(params, batch) -> {loss, accuracy, count}: in-batch NLL without dropout."""
  loss_fn = sharding.gathered_loss(
      functools.partial(in_batch_nll, similarity=similarity, temperature=temperature), mesh)
  return jax.jit(lambda params, batch: _dual_loss(graphdef, params, batch, None, loss_fn)[1])


def make_encode(graphdef, side: str):
  """-> f(params, ids, mask) -> [B, D] fp32 embeddings, `side` in {question, passage}."""
  def f(params, ids, mask):
    model = nnx.merge(graphdef, params)
    enc = model.question if side == "question" else model.passage
    return enc(ids, mask)
  return jax.jit(f)
