"""FAISS indexes over passage embeddings: exact, HNSW, and compressed (IVF-PQ).

- `flat`: exact inner product (`IndexFlatIP`).
- `hnsw`: HNSW on L2 with DPR's inner-product-to-L2 augmentation: with phi the largest squared
  norm, a passage x is stored as [x, sqrt(phi - |x|^2)] and a query q searched as [q, 0], so
  |q' - x'|^2 = |q|^2 + phi - 2 q.x and the nearest neighbours are the largest inner products.
- `ivfpq`: inverted lists with product quantisation (inner product), for corpora that do not fit
  in memory as fp32 (21M x 768 -> ~1.3 GB with 64-byte codes). Its k-means is trained on
  `train_sample_size` points: 256 per list (FAISS's own k-means keeps at most 256 per centroid
  and warns below 39), at least 100k, at most what `train_memory_gib` holds as fp32.
The index is built from the embedding parts one at a time and saved with its id map and the
identity (model fingerprint, corpus) of the embeddings; loading checks that identity.
"""
from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from dpr_jax.data.textio import DataError, atomic_write, check_file, read_json, write_json

KINDS = ("flat", "hnsw", "ivfpq")
MIN_PER_LIST = 39        # FAISS's k-means warns below 39 training points per centroid
TARGET_PER_LIST = 256    # and samples down to 256 per centroid above it
log = logging.getLogger("dpr_jax")


def train_sample_size(total: int, nlist: int, dim: int, *, memory_gib: float = 4.0,
                      per_list: int = TARGET_PER_LIST, floor: int = 100_000) -> int:
  """IVF training points: `per_list` per list (at least `floor`), no more than the corpus, and
  no more than `memory_gib` GiB of fp32 vectors."""
  cap = int(memory_gib * 2**30) // (4 * dim)
  return max(1, min(total, max(floor, per_list * nlist), cap))


class IndexMismatch(ValueError):
  pass


class DenseIndex:
  def __init__(self, index, ids: list[str], kind: str, phi: float, identity: dict):
    self.index, self.ids, self.kind, self.phi, self.identity = index, ids, kind, phi, identity

  def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """q: [Q, D] float32 -> (inner-product scores [Q, k], row indices [Q, k]), best first."""
    q = np.ascontiguousarray(q, np.float32)
    k = min(k, len(self.ids))
    if self.kind == "hnsw":
      aug = np.concatenate([q, np.zeros((len(q), 1), np.float32)], axis=1)
      d, i = self.index.search(aug, k)
      return ((q * q).sum(1, keepdims=True) + self.phi - d) / 2, i
    return self.index.search(q, k)

  def save(self, d):
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "index.json").unlink(missing_ok=True)  # written last: marks a complete index
    with atomic_write(d / "index.faiss", "wb") as f:
      f.write(faiss.serialize_index(self.index).tobytes())
    with atomic_write(d / "ids.txt") as f:
      f.write("".join(i + "\n" for i in self.ids))
    write_json(d / "index.json", {"kind": self.kind, "phi": self.phi, "size": len(self.ids),
                                  **self.identity})


def build(parts, kind: str, dim: int, identity: dict, *, hnsw_m: int = 64,
          ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None,
          pq_m: int | None = None, train_memory_gib: float = 4.0, seed: int = 0) -> DenseIndex:
  """parts: a re-iterable of (ids, [n, D] float32) chunks (e.g. `EmbeddingParts(dir)`).
  `train_memory_gib`: the most fp32 training vectors `ivfpq` holds (see `train_sample_size`)."""
  if kind not in KINDS:
    raise ValueError(f"index must be one of {KINDS}, got {kind!r}")
  ids, phi = [], 0.0
  if kind == "flat":
    index = faiss.IndexFlatIP(dim)
  elif kind == "hnsw":
    phi = max(float((e.astype(np.float32) ** 2).sum(1).max()) for _, e in parts)
    index = faiss.IndexHNSWFlat(dim + 1, hnsw_m)
    index.hnsw.efConstruction, index.hnsw.efSearch = ef_construction, ef_search
  else:
    total = sum(len(i) for i, _ in parts)
    nlist = nlist or max(1, min(4 * int(np.sqrt(total)), total // 39))
    pq_m = pq_m or next(m for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0)
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, 8,
                             faiss.METRIC_INNER_PRODUCT)
    n = train_sample_size(total, nlist, dim, memory_gib=train_memory_gib)
    log.info("ivfpq: training %d lists on %d of %d vectors (%.1f per list)", nlist, n, total,
             n / nlist)
    if n < MIN_PER_LIST * nlist:
      log.warning("ivfpq: %.1f training vectors per list, below the %d FAISS asks for%s", n / nlist,
                  MIN_PER_LIST, "" if n == total else
                  f" (train_memory_gib {train_memory_gib:g} holds {n} vectors)")
    index.train(_sample(parts, total, n, seed, dim))
    index.nprobe = min(nlist, 32)
  for part_ids, e in parts:
    e = np.ascontiguousarray(e, np.float32)
    if kind == "hnsw":
      e = np.concatenate([e, np.sqrt(np.maximum(phi - (e * e).sum(1, keepdims=True), 0))], 1)
    index.add(e)
    ids += list(part_ids)
  return DenseIndex(index, ids, kind, phi, identity)


def _sample(parts, total, n, seed, dim):
  """n of the `total` rows of `parts`, drawn without replacement, in one [n, dim] fp32 array."""
  keep = np.arange(total) if n >= total else \
      np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
  out, start, filled = np.empty((len(keep), dim), np.float32), 0, 0
  for _, e in parts:
    sel = keep[(keep >= start) & (keep < start + len(e))] - start
    out[filled:filled + len(sel)] = e[sel]
    filled, start = filled + len(sel), start + len(e)
  return out


def load(d, expect: dict | None = None) -> DenseIndex:
  """Loads a saved index; `expect` keys (fingerprint, corpus, ...) must match what it holds."""
  d = Path(d)
  meta = read_json(check_file(d / "index.json", "an index description"), "an index description")
  if not isinstance(meta, dict) or meta.get("kind") not in KINDS or "size" not in meta:
    raise DataError(f"{d / 'index.json'}: expected an index description with kind and size, "
                    f"found {str(meta)[:80]}")
  for k, v in (expect or {}).items():
    if meta.get(k) != v:
      raise IndexMismatch(f"{d}: index built for {k}={meta.get(k)!r}, but this run has {v!r}; "
                          "rebuild it (delete the folder) or pass the matching model/corpus")
  f = check_file(d / "index.faiss", "a FAISS index")
  try:
    index = faiss.read_index(str(f))
  except RuntimeError as e:
    raise DataError(f"{f}: expected a FAISS index, found a corrupt file "
                    f"({str(e).strip().split(': ')[-1]})") from e
  if meta["kind"] == "hnsw":
    index.hnsw.efSearch = max(index.hnsw.efSearch, 128)
  ids = check_file(d / "ids.txt", "the index's ids").read_text().split("\n")[:-1]
  if len(ids) != meta["size"] or index.ntotal != meta["size"]:
    raise DataError(f"{d}: expected {meta['size']} passages (index.json), found {len(ids)} ids "
                    f"and {index.ntotal} vectors")
  identity = {k: v for k, v in meta.items() if k not in ("kind", "phi", "size")}
  return DenseIndex(index, ids, meta["kind"], meta["phi"], identity)
