"""FAISS retrieval through `dpr_jax.retrieval.index`: build time, index memory, top-k queries/s, recall.

  python bench/faiss_bench.py --sizes 20000,1000000 --kinds flat,hnsw,ivfpq --dim 768

Random unit vectors (a stand-in for 768-d DPR embeddings; retrieval cost does not depend on
what the vectors mean, recall of approximate indexes does: on real embeddings, which cluster,
HNSW recall is higher than on isotropic noise). Queries are searched in one batch (FAISS
parallelises over queries), repeated `--repeats` times, median reported. Recall@k of `hnsw` and
`ivfpq` is measured against `flat` on the same queries. Memory is the serialised index size.
One JSON line per (size, kind).
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def unit_vectors(n, dim, seed, chunk=100_000):
  rng = np.random.default_rng(seed)
  for s in range(0, n, chunk):
    x = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
    yield [str(i) for i in range(s, s + len(x))], x / np.linalg.norm(x, axis=1, keepdims=True)


class Parts:
  """Re-iterable parts, as `index.build` reads them (twice for hnsw / ivfpq)."""
  def __init__(self, n, dim, seed):
    self.n, self.dim, self.seed = n, dim, seed

  def __iter__(self):
    return unit_vectors(self.n, self.dim, self.seed)


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--sizes", default="20000,1000000")
  ap.add_argument("--kinds", default="flat,hnsw,ivfpq")
  ap.add_argument("--dim", type=int, default=768)
  ap.add_argument("--queries", type=int, default=1000)
  ap.add_argument("--k", type=int, default=100)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--hnsw_m", type=int, default=64)
  ap.add_argument("--ef_construction", type=int, default=200)
  ap.add_argument("--embeddings", help="an encode.py output directory: index its real vectors "
                  "(queries: --queries of them, drawn at random) instead of random ones")
  ap.add_argument("--train_memory_gib", type=float, default=4.0,
                  help="ivfpq: the most fp32 training vectors held, in GiB (index.build's cap)")
  ap.add_argument("--max_hnsw_size", type=int, default=0,
                  help="skip hnsw above this many passages (0: no limit); building HNSW is slow")
  a = ap.parse_args()

  import faiss
  from dpr_jax.retrieval import index as index_lib
  q = next(unit_vectors(a.queries, a.dim, seed=12345))[1]
  sizes = [int(x) for x in a.sizes.split(",")]
  real = None
  if a.embeddings:
    from dpr_jax.retrieval.encoding import read_embeddings
    ids, emb, _ = read_embeddings(a.embeddings)
    emb = np.asarray(emb, np.float32)
    real = [(ids, emb)]
    a.dim, sizes = emb.shape[1], [len(ids)]
    q = emb[np.random.default_rng(0).choice(len(ids), a.queries, replace=False)]
  for n in sizes:
    exact = None
    for kind in a.kinds.split(","):
      row = {"bench": "faiss", "size": n, "kind": kind, "dim": a.dim, "k": a.k,
             "vectors": a.embeddings or "random unit",
             "queries": a.queries, "faiss": faiss.__version__, "machine": platform.machine(),
             "omp_threads": faiss.omp_get_max_threads(), "cpus": os.cpu_count()}
      if kind == "hnsw" and a.max_hnsw_size and n > a.max_hnsw_size:
        print(json.dumps({**row, "skipped": f"hnsw above --max_hnsw_size {a.max_hnsw_size}"}),
              flush=True)
        continue
      t0 = time.perf_counter()
      idx = index_lib.build(real or Parts(n, a.dim, seed=n), kind, a.dim, {},
                            hnsw_m=a.hnsw_m, ef_construction=a.ef_construction,
                            train_memory_gib=a.train_memory_gib)
      row["build_s"] = round(time.perf_counter() - t0, 1)
      row["index_mib"] = round(len(faiss.serialize_index(idx.index)) / 2**20, 1)
      times = []
      for _ in range(a.repeats):
        t0 = time.perf_counter()
        _, ids = idx.search(q, a.k)
        times.append(time.perf_counter() - t0)
      row["queries_per_s"] = round(a.queries / statistics.median(times), 1)
      if kind == "flat":
        exact = ids
      elif exact is not None:
        row[f"recall@{a.k}_vs_flat"] = round(float(np.mean(
            [len(set(x) & set(y)) / a.k for x, y in zip(ids, exact)])), 4)
      if kind == "hnsw":
        row.update(hnsw_m=a.hnsw_m, ef_construction=a.ef_construction,
                   ef_search=idx.index.hnsw.efSearch)
      if kind == "ivfpq":
        train = index_lib.train_sample_size(n, idx.index.nlist, a.dim,
                                            memory_gib=a.train_memory_gib)
        row.update(nlist=idx.index.nlist, nprobe=idx.index.nprobe, pq_m=idx.index.pq.M,
                   train_points=train, train_per_list=round(train / idx.index.nlist, 1))
      print(json.dumps(row), flush=True)
      del idx


if __name__ == "__main__":
  main()
