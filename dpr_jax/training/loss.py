"""DPR's in-batch negative log-likelihood, as pure functions.

Global batch: B questions, each with 1 positive and H hard negatives; passages are laid out
question-major, `[pos_0, hn_0_1..hn_0_H, pos_1, ...]`, so question i's positive is passage i*(1+H).
Every question is scored against all B*(1+H) passages of the global batch, except other copies
of its own positive (a passage repeated in the batch, or another question's positive that is the
same paragraph), which are masked: a copy scores exactly as the positive and is no negative.
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


def in_batch_nll(q: jax.Array, p: jax.Array, p_key: jax.Array | None = None, *,
                 similarity: str = "dot", temperature: float = 1.0,
                 axis_name=None) -> dict[str, jax.Array]:
  """Mean NLL of each question's positive among all passages of the global batch.

  q: [b, D] questions; p: [b*(1+H), D] their passages (this device's slice when `axis_name` is
  set, else the whole batch). With `axis_name`, passages (and keys) are all-gathered over that
  axis and the returned scalars are global means, identical on every device.
  p_key: [b*(1+H)] int, equal for two passages iff they are one passage
  (`data.examples.passage_keys`); every other copy of a question's positive is masked out of
  that question's scores, so that a duplicate is not a negative tied with the positive.
  Returns {"loss", "accuracy" (positive ranked first), "count" (B), "masked" (masked
  (question, passage) pairs of the global batch)}.
  """
  b = q.shape[0]
  if p.shape[0] % b:
    raise ValueError(f"{p.shape[0]} passages for {b} questions: expected a multiple")
  per_q = p.shape[0] // b
  if axis_name is None:
    p_all, key_all, offset = p, p_key, 0
  else:
    p_all = jax.lax.all_gather(p, axis_name, tiled=True)
    key_all = None if p_key is None else jax.lax.all_gather(p_key, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * b
  s = scores(q, p_all, similarity, temperature)                       # [b, B*(1+H)]
  target = (offset + jnp.arange(b)) * per_q
  if key_all is None:
    masked = jnp.zeros((), jnp.float32)
  else:
    copy = ((key_all[None, :] == key_all[target][:, None])
            & (jnp.arange(s.shape[1])[None, :] != target[:, None]))
    s = jnp.where(copy, -jnp.inf, s)
    masked = copy.sum().astype(jnp.float32)
  pos = jnp.take_along_axis(s, target[:, None], axis=1)[:, 0]
  nll = jax.nn.logsumexp(s, axis=1) - pos
  # Ties count against the positive: an all-equal score row is not a correct ranking.
  correct = (jnp.sum(s >= pos[:, None], axis=1) == 1).astype(jnp.float32)
  sums = jnp.stack([nll.sum(), correct.sum(), jnp.float32(b), masked])
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2], "count": sums[2],
          "masked": sums[3]}


def positive_ranks(s: jax.Array, positive: jax.Array) -> jax.Array:
  """s: [Q, P] scores, positive: [Q] column of each positive -> [Q] 0-based rank (ties count
  against the positive)."""
  pos = jnp.take_along_axis(s, positive[:, None], axis=1)
  return jnp.sum(s >= pos, axis=1) - 1
