"""Where our training step's time goes on XLA:CPU: per-op times from XLA's own trace, page faults.

  python bench/xla_profile.py --arch minilm --batch 16 --q_len 32 --p_len 128 [--attn_dropout 0]
  DPR_JAX_MALLOC=1 python bench/xla_profile.py ...   # with dpr_jax.cpu_malloc's settings

Runs the same training step as `bench/train_throughput.py` (ours only), then:
- wall time, CPU utilisation, kernel share and minor page faults per step (`getrusage`);
- a `jax.profiler` trace of `--trace_steps` steps with XLA:CPU's per-thunk events
  (`--xla_cpu_enable_xprof_traceme`), each op mapped to its HLO (`--xla_dump_to`) for its
  shape and the JAX operation it came from, summed per category (matmul forward / backward,
  dropout RNG, GELU's erf, other elementwise and copies) and listed op by op (`--top`).
On CPU, op times are the executing thread's time; XLA runs independent ops concurrently on the
two cores, so an op's time includes waiting for cores its neighbour holds. On a GPU they are the
device's kernel times per HLO op (`--dtype bfloat16`). One JSON line each.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import tempfile
import time

import train_throughput as tt  # this directory: the step it measures

from dpr_jax import cpu_malloc

RNG = ("threefry", "bernoulli", "_uniform", "random_bits")


def category(thunk: str, jax_op: str) -> str:
  """A coarse class for one executed op, from its thunk name and the JAX op it lowers."""
  if any(s in jax_op for s in RNG):
    return "dropout RNG (threefry)"
  if not jax_op:
    return "copies without metadata (loop state, outputs)"
  if "jvp(" not in jax_op:
    return "optimizer update (AdamW, clipping, non-finite guard)"
  if "cudnn" in thunk or "fmha" in thunk:
    return "attention (cuDNN)"
  if any(t in thunk for t in ("ynn_fusion", "dot", "gemm", "cublas", "matmul")):
    if "dot_general" in jax_op:
      return "matmul, backward" if "transpose(" in jax_op else "matmul, forward"
    return "reductions and transposes in YNNPACK / Eigen"
  if "erf" in jax_op:
    return "GELU (erf)"
  if thunk.startswith("copy") or "transpose" in thunk:
    return "copies and transposes"
  return "other elementwise fusions"


def hlo_metadata(dump_dir: str) -> dict[str, tuple[str, str]]:
  """Op name -> (shape, JAX op_name) from the optimised HLO of the jitted train step."""
  files = sorted(glob.glob(os.path.join(dump_dir, "*jit_step*after_optimizations.txt")))
  meta = {}
  for line in open(files[-1]):
    m = re.match(r"\s+(?:ROOT )?%?([\w.\-]+) = (\S+) (.*)", line)
    if m:
      op = re.search(r'op_name="([^"]*)"', m.group(3))
      meta[m.group(1)] = (m.group(2), op.group(1) if op else "")
  return meta


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  tt.add_step_args(ap)
  ap.set_defaults(arch="minilm", batch=16, p_len=128)
  ap.add_argument("--warmup", type=int, default=6)
  ap.add_argument("--steps", type=int, default=3, help="timed steps")
  ap.add_argument("--trace_steps", type=int, default=2)
  ap.add_argument("--top", type=int, default=25)
  a = ap.parse_args()
  work = tempfile.mkdtemp(prefix="xla_profile_")
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                      "--xla_cpu_enable_xprof_traceme=true",
                                      f"--xla_dump_to={work}/hlo", "--xla_dump_hlo_as_text"])
  import jax
  on_cpu = jax.default_backend() == "cpu"
  cfg = tt.bert_config(a)
  run = tt.make_ours(a, cfg, tt.make_batches(a, cfg)[0]["ours"])
  for _ in range(a.warmup):  # compiles; under DPR_JAX_MALLOC=1 the heap also settles here
    run()
  r0, c0, t0 = resource.getrusage(resource.RUSAGE_SELF), os.times(), time.perf_counter()
  for _ in range(a.steps):
    run()
  wall = time.perf_counter() - t0
  r1, c1 = resource.getrusage(resource.RUSAGE_SELF), os.times()
  common = {"bench": "xla_profile", "mode": a.mode, "arch": a.arch, "batch": a.batch, "q_len": a.q_len,
            "p_len": a.p_len, "attn_dropout": a.attn_dropout,
            "hidden_dropout": a.hidden_dropout, "dtype": a.dtype, "malloc": cpu_malloc.setting(),
            "jax": jax.__version__, "device": getattr(jax.devices()[0], "device_kind", "cpu"),
            "clock": "executor thread" if on_cpu else "device kernels"}
  print(json.dumps({**common, "step_s": round(wall / a.steps, 3),
                    "cpu_utilisation": round((c1.user - c0.user + c1.system - c0.system) / wall, 2),
                    "kernel_share_of_cpu": round((c1.system - c0.system) / max(
                        1e-9, c1.user - c0.user + c1.system - c0.system), 3),
                    "minor_page_faults_per_step": (r1.ru_minflt - r0.ru_minflt) // a.steps}),
        flush=True)

  jax.profiler.start_trace(f"{work}/trace")
  for _ in range(a.trace_steps):
    run()
  jax.profiler.stop_trace()
  meta = hlo_metadata(f"{work}/hlo")
  trace = glob.glob(f"{work}/trace/plugins/profile/*/*.trace.json.gz")[-1]
  events = json.load(gzip.open(trace))["traceEvents"]
  threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
  processes = {e["pid"]: e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "process_name"}

  def executed_op(e) -> str | None:
    """The HLO op an event executed, or None for events that are not one op's execution:
    XLA:CPU's executor threads on CPU, the device's kernel streams on a GPU/TPU."""
    if e.get("ph") != "X":
      return None
    if on_cpu:
      ok = threads.get((e["pid"], e["tid"]), "").startswith("tf_XLA") and not e[
          "name"].startswith(("ThunkExecutor", "SlinkyThreadPool"))
      return e["name"] if ok else None
    if not processes.get(e["pid"], "").startswith("/device:"):
      return None
    return e.get("args", {}).get("hlo_op") or e["name"]

  per_cat, per_op = collections.Counter(), collections.Counter()
  for e in events:
    name = executed_op(e)
    if name is None:
      continue
    shape, jax_op = meta.get(name, ("?", ""))
    thunk = re.sub(r"\.\d+$", "", name)
    ms = e["dur"] / 1e3 / a.trace_steps
    per_cat[category(thunk, jax_op)] += ms
    per_op[(thunk, shape, jax_op.removeprefix("jit(step)/"))] += ms
  total = sum(per_cat.values())
  for cat, ms in per_cat.most_common():
    print(json.dumps({**common, "category": cat, "ms_per_step": round(ms, 1),
                      "share": round(ms / total, 3)}))
  for (thunk, shape, jax_op), ms in per_op.most_common(a.top):
    print(json.dumps({**common, "op": thunk, "shape": shape, "jax_op": jax_op[-80:],
                      "ms_per_step": round(ms, 1)}))


if __name__ == "__main__":
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: profile with its SETTINGS
  main()
