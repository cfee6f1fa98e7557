"""Exact (or `approx_max_k`) inner-product top-k with the passage embeddings sharded over the mesh.

The corpus is one [N_pad, D] array split by rows over every device of the mesh (all processes),
with the training mesh's batch axes (`sharding.BATCH`). A batch of questions is replicated; each
device scores its rows chunk by chunk (fp32 accumulation whatever the storage dtype), keeps a
running top-k (`lax.top_k`, or `lax.approx_max_k` with its recall target, per chunk), and the
per-device lists are all-gathered and merged to the global top-k. Rows past N (padding to a
multiple of devices x chunk) score -inf and are never returned. Ties go to the lower row (the
row order is `EmbeddingParts`' order, the order FAISS indexes are built in): `lax.top_k` puts the
lower index first, and every merge lists lower rows first.

Each process reads only the embedding parts that hold rows of its own devices.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from dpr_jax.training import sharding

DTYPES = {"float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}
PRECISIONS = {"highest": lax.Precision.HIGHEST, "default": lax.Precision.DEFAULT}


class CorpusTooLarge(ValueError):
  """The sharded corpus does not fit in device memory."""


class BadEmbeddings(ValueError):
  """An embedding part that cannot be indexed (non-finite values, wrong shape, id count)."""


def layout(n: int, n_dev: int, chunk: int) -> tuple[int, int]:
  """-> (rows per device, rows per chunk): the fewest chunks of at most `chunk` rows (a multiple
  of 8) covering ceil(n / n_dev) rows; rows per device = chunks x rows per chunk."""
  per_dev = max(1, -(-n // n_dev))
  n_chunks = -(-per_dev // chunk)
  c = -(-(-(-per_dev // n_chunks)) // 8) * 8
  return n_chunks * c, c


def _chunk_topk(q, x, base, n_valid, k, approx, recall_target, precision):
  """q [Q, D] f32, x [C, D] rows base.. -> (scores [Q, k'], global rows [Q, k'])."""
  s = lax.dot_general(q, x.astype(jnp.float32), (((1,), (1,)), ((), ())), precision=precision,
                      preferred_element_type=jnp.float32)
  rows = base + jnp.arange(x.shape[0], dtype=jnp.int32)
  s = jnp.where(rows[None, :] < n_valid, s, -jnp.inf)
  kk = min(k, x.shape[0])
  if approx:
    cs, ci = lax.approx_max_k(s, kk, recall_target=recall_target)
  else:
    cs, ci = lax.top_k(s, kk)
  return cs, rows[ci]


def _merge(s_a, r_a, s_b, r_b, k):
  """Top-k of two candidate lists; `a` holds the lower rows, so it wins ties."""
  s, r = jnp.concatenate([s_a, s_b], 1), jnp.concatenate([r_a, r_b], 1)
  ts, ti = lax.top_k(s, k)
  return ts, jnp.take_along_axis(r, ti, 1)


@functools.lru_cache(maxsize=16)
def _search_fn(mesh, n_valid: int, chunk: int, k: int, approx: bool, recall_target: float,
               precision: str):
  prec = PRECISIONS[precision]

  def local(q, x):
    n_local, d = x.shape
    base = lax.axis_index(sharding.BATCH) * n_local
    xs = x.reshape(n_local // chunk, chunk, d)

    def step(carry, inp):
      c, xc = inp
      cs, cr = _chunk_topk(q, xc, base + c * chunk, n_valid, k, approx, recall_target, prec)
      return _merge(*carry, cs, cr, k), None

    init = (jnp.full((q.shape[0], k), -jnp.inf, jnp.float32),
            jnp.full((q.shape[0], k), -1, jnp.int32))
    (bs, br), _ = lax.scan(step, init, (jnp.arange(xs.shape[0], dtype=jnp.int32), xs))
    # [devices, Q, k] in device (= row) order -> [Q, devices * k]: lower rows first.
    gs = lax.all_gather(bs, sharding.BATCH).transpose(1, 0, 2).reshape(q.shape[0], -1)
    gr = lax.all_gather(br, sharding.BATCH).transpose(1, 0, 2).reshape(q.shape[0], -1)
    ts, ti = lax.top_k(gs, k)
    return ts, jnp.take_along_axis(gr, ti, 1)

  f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(sharding.BATCH)), out_specs=(P(), P()),
                    check_vma=False)
  return jax.jit(f)


class MeshIndex:
  """Duck-types `index.DenseIndex` for retrieval: `ids`, `identity`, `search(q, k)`."""

  def __init__(self, emb: jax.Array, ids: list[str], identity: dict, mesh, *, chunk: int,
               approx: bool = False, recall_target: float = 0.95, precision: str = "highest",
               query_batch: int = 512):
    if precision not in PRECISIONS:
      raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    self.emb, self.ids, self.identity, self.mesh, self.chunk = emb, ids, identity, mesh, chunk
    self.approx, self.recall_target, self.precision = approx, recall_target, precision
    self.query_batch, self.kind = query_batch, "mesh"

  def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """q: [Q, D] -> (inner-product scores [Q, k] float32, row indices [Q, k]), best first."""
    q = np.asarray(q, np.float32)
    k = min(k, len(self.ids))
    b = min(self.query_batch, max(8, 1 << (len(q) - 1).bit_length()))
    fn = _search_fn(self.mesh, len(self.ids), self.chunk, k, self.approx,
                    float(self.recall_target), self.precision)
    rep = sharding.replicated(self.mesh)
    pending = []  # every batch is dispatched before the first result is read
    for s in range(0, len(q), b):
      qb = np.zeros((b, q.shape[1]), np.float32)
      qb[:len(q[s:s + b])] = q[s:s + b]
      qa = jax.make_array_from_callback(qb.shape, rep, lambda i, qb=qb: qb[i])
      pending.append((len(q[s:s + b]), *fn(qa, self.emb)))
    if not pending:
      return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    scores = np.concatenate([np.asarray(ts.addressable_data(0))[:n] for n, ts, _ in pending])
    rows = np.concatenate([np.asarray(tr.addressable_data(0))[:n] for n, _, tr in pending])
    rows = rows.astype(np.int64)
    rows[~np.isfinite(scores)] = -1
    return scores, rows


def device_bytes_available(mesh) -> int:
  """Free bytes on the smallest device of this process; CPU devices share the host's memory."""
  local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  stats = [d.memory_stats() for d in local]
  if all(s and "bytes_limit" in s for s in stats):
    return min(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
  avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return avail // max(1, len(local))


def check_memory(n: int, dim: int, dtype: str, mesh, chunk: int, query_batch: int,
                 available: int | None = None) -> str:
  """Raises CorpusTooLarge naming the bytes needed; returns the line to log."""
  n_dev = mesh.devices.size
  per_dev, c = layout(n, n_dev, chunk)
  store = per_dev * dim * np.dtype(DTYPES[dtype]).itemsize
  work = query_batch * c * 4 * 3 + c * dim * 4  # scores, top-k buffers, the fp32 chunk
  need = store + work
  available = device_bytes_available(mesh) if available is None else available
  kind = mesh.devices.flat[0].platform
  line = (f"mesh index: {n:,} x {dim} {dtype} over {n_dev} {kind} devices: "
          f"{need / 2**20:,.1f} MiB per device ({store / 2**20:,.1f} MiB embeddings), "
          f"{available / 2**20:,.1f} MiB available per device")
  if need > available:
    raise CorpusTooLarge(f"{line}: the corpus needs {need * n_dev / 2**30:,.2f} GiB over "
                         f"{n_dev} devices; use more devices, a smaller storage dtype or a "
                         "FAISS ivfpq index")
  return line


def from_array(x: np.ndarray, ids: list[str], identity: dict | None = None, *, mesh=None,
               dtype: str = "float32", chunk: int = 16384, **kw) -> MeshIndex:
  """An index over an in-memory [N, D] array (every process passes the whole array)."""
  if len(ids) != len(x):
    raise BadEmbeddings(f"{len(ids)} ids for {len(x)} rows")
  mesh = mesh or sharding.make_mesh()
  per_dev, c = layout(len(x), mesh.devices.size, chunk)
  shape = (per_dev * mesh.devices.size, x.shape[1])

  def rows(idx):
    start, stop, _ = idx[0].indices(shape[0])
    out = np.zeros((stop - start, shape[1]), DTYPES[dtype])
    have = x[start:min(stop, len(x))]
    out[:len(have)] = have
    return out
  emb = jax.make_array_from_callback(shape, NamedSharding(mesh, P(sharding.BATCH)), rows)
  return MeshIndex(emb, list(ids), identity or {}, mesh, chunk=c, **kw)


def _parts_layout(parts) -> tuple[list[str], list[tuple[Path, int, int]]]:
  """-> (all ids in row order, [(part .npy, first row, end row)]); reads ids and .npy headers."""
  ids, spans = [], []
  for m in parts.manifests:
    for stem in m["parts"]:
      npy, ids_f = parts.dir / f"{stem}.npy", parts.dir / f"{stem}.ids.txt"
      part_ids = ids_f.read_text().split("\n")[:-1]
      shape = np.load(npy, mmap_mode="r").shape
      if len(shape) != 2 or shape[1] != parts.dim or shape[0] != len(part_ids):
        raise BadEmbeddings(f"{npy}: expected [{len(part_ids)}, {parts.dim}] (the rows of "
                            f"{ids_f.name} x the manifest's dim), found {list(shape)}")
      spans.append((npy, len(ids), len(ids) + shape[0]))
      ids += part_ids
  return ids, spans


def _read_rows(spans, start: int, stop: int, dim: int, dtype) -> np.ndarray:
  """Rows [start, stop) from the parts that hold them (zeros past the corpus)."""
  out = np.zeros((stop - start, dim), dtype)
  for npy, a, b in spans:
    lo, hi = max(a, start), min(b, stop)
    if lo >= hi:
      continue
    block = np.asarray(np.load(npy, mmap_mode="r")[lo - a:hi - a], np.float32)
    bad = ~np.isfinite(block).all(1)
    if bad.any():
      raise BadEmbeddings(f"{npy}: row {lo - a + int(np.argmax(bad))} holds a non-finite value; "
                          "expected finite embeddings (re-encode this part)")
    out[lo - start:hi - start] = block.astype(dtype)
  return out


def load(emb_dir, *, mesh=None, dtype: str | None = None, chunk: int = 16384,
         query_batch: int = 512, device_bytes: int | None = None, log: bool = True,
         **kw) -> MeshIndex:
  """`encode.py`'s output in `emb_dir` as a mesh index. dtype: storage (default: the parts'
  dtype, so scores equal FAISS flat's over the same parts); device_bytes: memory per device to
  plan for (default: what the devices report free)."""
  from dpr_jax.retrieval.encoding import EmbeddingParts
  parts = EmbeddingParts(emb_dir)
  dtype = dtype or parts.manifests[0].get("dtype", "float32")
  if dtype not in DTYPES:
    raise ValueError(f"storage dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
  mesh = mesh or sharding.make_mesh()
  ids, spans = _parts_layout(parts)
  if not ids:
    raise BadEmbeddings(f"{emb_dir}: the embedding parts hold no rows")
  line = check_memory(len(ids), parts.dim, dtype, mesh, chunk, query_batch, device_bytes)
  if log:
    print(line, file=sys.stderr, flush=True)
  per_dev, c = layout(len(ids), mesh.devices.size, chunk)
  shape = (per_dev * mesh.devices.size, parts.dim)
  emb = jax.make_array_from_callback(
      shape, NamedSharding(mesh, P(sharding.BATCH)),
      lambda idx: _read_rows(spans, *idx[0].indices(shape[0])[:2], parts.dim, DTYPES[dtype]))
  return MeshIndex(emb, ids, parts.identity, mesh, chunk=c, query_batch=query_batch, **kw)
