"""Top-k queries/s of the mesh index against FAISS flat / HNSW / IVF-PQ, side by side in one run.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python bench/mesh_bench.py \\
      --sizes 20000,200000,1000000 --vectors random,real --embeddings EMB_DIR \\
      --out bench/results/mesh_cpu_$(date -u +%F).jsonl

For each vector set and size, the same corpus and the same batch of queries go to every index;
each search is run once to compile / warm up, then `--repeats` times, median reported.
- random: unit Gaussian vectors of `--dim` dimensions.
- real: an encode.py directory's embeddings (MiniLM on SQuAD), tiled to the size with Gaussian
  noise (`--noise` x the per-dimension std) on every copy after the first, re-normalised; queries
  are corpus rows drawn at random, perturbed the same way.
Mesh variants (`--mesh`): DEVICES:DTYPE[:approx], e.g. `1:float32`, `8:bfloat16`, `8:float32:approx`
(DEVICES: the first that many devices of the default backend; on a GPU host, the GPUs). Recall@k
of every approximate search is measured against FAISS flat on the same queries; exact mesh
variants report the fraction of (query, rank) whose id equals flat's (below 1 only where two
scores differ by fp32 rounding: FAISS and XLA sum in different orders). One JSON line per (vectors, size, index).
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def random_corpus(n, dim, seed):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, dim), dtype=np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def tiled(base, n, noise, seed):
  """base rows repeated to n rows; every copy after the first is perturbed and re-normalised."""
  rng = np.random.default_rng(seed)
  reps = -(-n // len(base))
  std = base.std(0, keepdims=True)
  out = np.empty((reps * len(base), base.shape[1]), np.float32)
  for r in range(reps):
    blk = base if r == 0 else base + noise * std * rng.standard_normal(base.shape, np.float32)
    out[r * len(base):(r + 1) * len(base)] = blk / np.linalg.norm(blk, axis=1, keepdims=True)
  return out[:n]


def timed(fn, repeats):
  fn()  # compile / warm up
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts), out


def recall(rows, truth):
  k = truth.shape[1]
  return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(rows, truth)]))


def run_faiss(kind, x, q, k, a):
  from dpr_jax.retrieval import index as index_lib
  t0 = time.perf_counter()
  idx = index_lib.build([([str(i) for i in range(len(x))], x)], kind, x.shape[1], {},
                        hnsw_m=a.hnsw_m, ef_construction=a.ef_construction)
  build_s = time.perf_counter() - t0
  sec, (s, r) = timed(lambda: idx.search(q, k), a.repeats)
  return {"build_s": round(build_s, 2)}, sec, r


def run_mesh(spec, x, q, k, a):
  import jax
  from dpr_jax.retrieval import mesh_index
  from dpr_jax.training import sharding
  dev, dtype, *mode = spec.split(":")
  mesh = sharding.make_mesh(devices=jax.devices()[:int(dev)])
  t0 = time.perf_counter()
  idx = mesh_index.from_array(x, [str(i) for i in range(len(x))], mesh=mesh, dtype=dtype,
                              chunk=a.chunk, query_batch=a.query_batch,
                              approx=mode == ["approx"], recall_target=a.recall_target)
  jax.block_until_ready(idx.emb)
  load_s = time.perf_counter() - t0
  sec, (s, r) = timed(lambda: idx.search(q, k), a.repeats)
  extra = {"load_s": round(load_s, 2), "devices": int(dev), "dtype": dtype,
           "approx": mode == ["approx"], "chunk": idx.chunk, "query_batch": a.query_batch,
           "platform": mesh.devices.flat[0].platform,
           "device_kind": mesh.devices.flat[0].device_kind}
  del idx
  gc.collect()
  return extra, sec, r


def corpora(a):
  for vectors in a.vectors.split(","):
    for n in (int(s) for s in a.sizes.split(",")):
      if vectors == "random":
        x = random_corpus(n, a.dim, seed=n)
        q = random_corpus(a.queries, a.dim, seed=12345)
      else:
        from dpr_jax.retrieval.encoding import read_embeddings
        base = read_embeddings(a.embeddings)[1]
        x = tiled(base, n, a.noise, seed=n)
        pick = np.random.default_rng(0).choice(len(base), a.queries, replace=False)
        q = tiled(base[pick], 2 * a.queries, a.noise, seed=1)[a.queries:]
      yield vectors, n, x, q


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--sizes", default="20000,200000,1000000")
  ap.add_argument("--vectors", default="random", help="random,real")
  ap.add_argument("--embeddings", help="encode.py output directory (for --vectors real)")
  ap.add_argument("--dim", type=int, default=768, help="for random vectors")
  ap.add_argument("--noise", type=float, default=0.3)
  ap.add_argument("--queries", type=int, default=256)
  ap.add_argument("--k", type=int, default=100)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--faiss", default="flat,hnsw,ivfpq")
  ap.add_argument("--max_build_size", type=int, default=200_000,
                  help="skip hnsw / ivfpq above this many passages (building them is slow)")
  ap.add_argument("--hnsw_m", type=int, default=32)
  ap.add_argument("--ef_construction", type=int, default=80)
  ap.add_argument("--mesh", default="1:float32,1:bfloat16,8:float32,8:float32:approx")
  ap.add_argument("--chunk", type=int, default=16384)
  ap.add_argument("--query_batch", type=int, default=512)
  ap.add_argument("--recall_target", type=float, default=0.95)
  ap.add_argument("--out", help="append the JSON lines here too")
  a = ap.parse_args()

  import faiss
  import jax
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent).stdout.strip()
  for vectors, n, x, q in corpora(a):
    common = {"bench": "mesh", "vectors": vectors, "size": n, "dim": x.shape[1], "k": a.k,
              "queries": len(q), "commit": commit, "faiss": faiss.__version__, "jax": jax.__version__,
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "faiss_threads": faiss.omp_get_max_threads(),
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    truth, flat_qps = None, None
    jobs = [("faiss", kind) for kind in a.faiss.split(",") if kind] + \
           [("mesh", spec) for spec in a.mesh.split(",") if spec]
    jobs.sort(key=lambda j: j != ("faiss", "flat"))  # flat first: the reference
    for engine, what in jobs:
      row = {**common, "index": f"{engine}:{what}"}
      if engine == "faiss" and what != "flat" and n > a.max_build_size:
        print(json.dumps({**row, "skipped": f"{what} above --max_build_size {a.max_build_size}"}))
        continue
      if engine == "mesh" and int(what.split(":")[0]) > len(jax.devices()):
        print(json.dumps({**row, "skipped": f"only {len(jax.devices())} devices"}))
        continue
      extra, sec, rows = (run_faiss if engine == "faiss" else run_mesh)(what, x, q, a.k, a)
      row.update(extra, search_s=round(sec, 4), queries_per_s=round(len(q) / sec, 2))
      if truth is None:
        truth, flat_qps = rows, row["queries_per_s"]
      else:
        row["recall_vs_flat"] = round(recall(rows, truth), 4)
        row["same_ids_as_flat"] = round(float(np.mean(rows == truth)), 5)  # by rank; fp32 near-ties
        row["x_flat"] = round(row["queries_per_s"] / flat_qps, 3)
      line = json.dumps(row)
      print(line, flush=True)
      if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a") as f:
          f.write(line + "\n")
    del x, q
    gc.collect()


if __name__ == "__main__":
  main()
