"""FAISS indexes over passage embeddings: exact, HNSW, and compressed (IVF-PQ).

- `flat`: exact inner product (`IndexFlatIP`).
- `hnsw`: HNSW on L2 with DPR's inner-product-to-L2 augmentation: with phi the largest squared
  norm, a passage x is stored as [x, sqrt(phi - |x|^2)] and a query q searched as [q, 0], so
  |q' - x'|^2 = |q|^2 + phi - 2 q.x and the nearest neighbours are the largest inner products.
- `ivfpq`: inverted lists with product quantisation (inner product), for corpora that do not fit
  in memory as fp32 (21M x 768 -> ~1.3 GB with 64-byte codes).
The index is built from the embedding parts one at a time and saved with its id map and the
identity (model fingerprint, corpus) of the embeddings; loading checks that identity.
"""
from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

KINDS = ("flat", "hnsw", "ivfpq")


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
    faiss.write_index(self.index, str(d / "index.faiss"))
    (d / "ids.txt").write_text("".join(i + "\n" for i in self.ids))
    (d / "index.json").write_text(json.dumps({"kind": self.kind, "phi": self.phi,
                                              "size": len(self.ids), **self.identity}, indent=1))


def build(parts, kind: str, dim: int, identity: dict, *, hnsw_m: int = 64,
          ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None,
          pq_m: int | None = None, train_size: int = 100_000, seed: int = 0) -> DenseIndex:
  """parts: a re-iterable of (ids, [n, D] float32) chunks (e.g. `embedding_parts(dir)`)."""
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
    sample = np.concatenate([e for _, e in parts]).astype(np.float32) if total <= train_size else \
        _sample(parts, total, train_size, seed)
    index.train(sample)
    index.nprobe = min(nlist, 32)
  for part_ids, e in parts:
    e = np.ascontiguousarray(e, np.float32)
    if kind == "hnsw":
      e = np.concatenate([e, np.sqrt(np.maximum(phi - (e * e).sum(1, keepdims=True), 0))], 1)
    index.add(e)
    ids += list(part_ids)
  return DenseIndex(index, ids, kind, phi, identity)


def _sample(parts, total, n, seed):
  rng = np.random.default_rng(seed)
  keep, out, start = np.sort(rng.choice(total, n, replace=False)), [], 0
  for _, e in parts:
    sel = keep[(keep >= start) & (keep < start + len(e))] - start
    out.append(np.asarray(e[sel], np.float32))
    start += len(e)
  return np.concatenate(out)


def load(d, expect: dict | None = None) -> DenseIndex:
  """Loads a saved index; `expect` keys (fingerprint, corpus, ...) must match what it holds."""
  d = Path(d)
  meta = json.loads((d / "index.json").read_text())
  for k, v in (expect or {}).items():
    if meta.get(k) != v:
      raise IndexMismatch(f"{d}: index built for {k}={meta.get(k)!r}, but this run has {v!r}; "
                          "rebuild it (delete the folder) or pass the matching model/corpus")
  index = faiss.read_index(str(d / "index.faiss"))
  if meta["kind"] == "hnsw":
    index.hnsw.efSearch = max(index.hnsw.efSearch, 128)
  ids = (d / "ids.txt").read_text().split("\n")[:-1]
  identity = {k: v for k, v in meta.items() if k not in ("kind", "phi", "size")}
  return DenseIndex(index, ids, meta["kind"], meta["phi"], identity)
