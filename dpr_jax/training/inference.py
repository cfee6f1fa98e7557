"""Batched, data-parallel embedding of tokenised text on the mesh (every process takes part)."""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from dpr_jax.data import buckets
from dpr_jax.training import sharding


def embed(encode_fn, params, ids: np.ndarray, mask: np.ndarray, batch_size: int,
          mesh, local: bool = False) -> np.ndarray:
  """ids, mask: [N, L] (the same on every process) -> [N, D] float32 numpy embeddings.

  Batches are `batch_size` rows (rounded up to the device count); the last one is padded with
  copies of row 0 and trimmed, so shapes stay fixed and compile once per length.
  `local=True`: `mesh` holds only this process's devices and each process embeds its own rows.
  """
  n_dev = sharding.batch_size_multiple(mesh)
  batch_size = -(-batch_size // n_dev) * n_dev
  pc, pi = (1, 0) if local else (jax.process_count(), jax.process_index())
  if batch_size % pc:
    raise ValueError(f"batch {batch_size} not divisible by {pc} processes")
  per = batch_size // pc
  out = []
  for start in range(0, len(ids), batch_size):
    b_ids, b_mask = ids[start:start + batch_size], mask[start:start + batch_size]
    real = len(b_ids)
    if real < batch_size:
      pad = batch_size - real
      b_ids = np.concatenate([b_ids, np.repeat(ids[:1], pad, 0)])
      b_mask = np.concatenate([b_mask, np.repeat(mask[:1], pad, 0)])
    g = sharding.host_to_global({"ids": b_ids[pi * per:(pi + 1) * per],
                                 "mask": b_mask[pi * per:(pi + 1) * per]}, mesh)
    e = encode_fn(params, g["ids"], g["mask"])
    e = multihost_utils.process_allgather(e, tiled=True) if pc > 1 else np.asarray(e)
    out.append(np.asarray(e[:real], np.float32))
  return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def embed_bucketed(encode_fn, params, ids: np.ndarray, mask: np.ndarray, batch_size: int,
                   mesh, bucket_multiple: int, max_length: int | None = None,
                   local: bool = False) -> np.ndarray:
  """`embed` on length buckets: rows sorted longest first, each batch padded to its bucket
  length (`dpr_jax.data.buckets`; 0: `max_length`, default the width of `ids`). Returns rows in
  the input order."""
  n_dev = sharding.batch_size_multiple(mesh)
  batch_size = -(-batch_size // n_dev) * n_dev
  out = None
  for sel, length in buckets.length_sorted_batches(mask.sum(1), batch_size, bucket_multiple,
                                                  max_length or ids.shape[1]):
    b_ids, b_mask = buckets.pad_to(ids[sel], mask[sel], length)
    e = embed(encode_fn, params, b_ids, b_mask, batch_size, mesh, local)
    if out is None:
      out = np.zeros((len(ids), e.shape[1]), np.float32)
    out[sel] = e
  return out if out is not None else np.zeros((0, 0), np.float32)
