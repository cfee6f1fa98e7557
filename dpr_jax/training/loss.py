"""DPR's in-batch negative log-likelihood, as pure functions.

Global batch: B questions, each with 1 positive and H hard negatives; passages are laid out
question-major, `[pos_0, hn_0_1..hn_0_H, pos_1, ...]`, so question i's positive is passage i*(1+H).
Every question is scored against all B*(1+H) passages of the global batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

SIMILARITIES = ("dot", "cosine")


def scores(q: jax.Array, p: jax.Array, similarity: str = "dot",
           temperature: float = 1.0) -> jax.Array:
  """q: [Bq, D], p: [Bp, D] -> [Bq, Bp] fp32. `cosine` divides by `temperature`."""
  q, p = q.astype(jnp.float32), p.astype(jnp.float32)
  if similarity == "dot":
    return q @ p.T
  if similarity == "cosine":
    qn = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    pn = p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    return (qn @ pn.T) / temperature
  raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")


def in_batch_nll(q: jax.Array, p: jax.Array, *, similarity: str = "dot",
                 temperature: float = 1.0, axis_name=None) -> dict[str, jax.Array]:
  """Mean NLL of each question's positive among all passages of the global batch.

  q: [b, D] questions; p: [b*(1+H), D] their passages (this device's slice when `axis_name` is
  set, else the whole batch). With `axis_name`, passages are all-gathered over that axis and the
  returned scalars are global means, identical on every device.
  Returns {"loss", "accuracy" (positive ranked first), "count" (B)}.
  """
  b = q.shape[0]
  if p.shape[0] % b:
    raise ValueError(f"{p.shape[0]} passages for {b} questions: expected a multiple")
  per_q = p.shape[0] // b
  if axis_name is None:
    p_all, offset = p, 0
  else:
    p_all = jax.lax.all_gather(p, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * b
  s = scores(q, p_all, similarity, temperature)                       # [b, B*(1+H)]
  target = (offset + jnp.arange(b)) * per_q
  pos = jnp.take_along_axis(s, target[:, None], axis=1)[:, 0]
  nll = jax.nn.logsumexp(s, axis=1) - pos
  # Ties count against the positive: an all-equal score row is not a correct ranking.
  correct = (jnp.sum(s >= pos[:, None], axis=1) == 1).astype(jnp.float32)
  sums = jnp.stack([nll.sum(), correct.sum(), jnp.float32(b)])
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2], "count": sums[2]}


def positive_ranks(s: jax.Array, positive: jax.Array) -> jax.Array:
  """s: [Q, P] scores, positive: [Q] column of each positive -> [Q] 0-based rank (ties count
  against the positive)."""
  pos = jnp.take_along_axis(s, positive[:, None], axis=1)
  return jnp.sum(s >= pos, axis=1) - 1
