"""Peak memory of one dual-encoder training step against the global batch, with and without
gradient caching; and, with `--run`, whether the step actually trains on this device.

  python bench/grad_cache_memory.py --arch minilm --batches 8,16,32,64,128 --chunks 0,4
  python bench/grad_cache_memory.py --arch bert-base --dtype bfloat16 --p_len 256 \
      --batches 256,512,1024 --chunks 0 --run          # on a GPU: the largest batch that trains

Peak memory is XLA's own buffer assignment for the compiled step (arguments + outputs + temporaries
- donated aliases): exact for what
the step allocates, and the same number the runtime needs, without running it. `--run` also
executes two steps and reports the step time, or the out-of-memory error. One JSON line each.
Random weights and tokens (every token real); B questions with 1+H passages each.
"""
import argparse
import json
import sys
import time

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from train_throughput import ARCHS  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--arch", choices=sorted(ARCHS), default="minilm")
  ap.add_argument("--batches", default="8,16,32,64")
  ap.add_argument("--chunks", default="0,4", help="grad_cache_chunk values (0: no caching)")
  ap.add_argument("--hard_negatives", type=int, default=1)
  ap.add_argument("--q_len", type=int, default=32)
  ap.add_argument("--p_len", type=int, default=128)
  ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  ap.add_argument("--remat", action="store_true")
  ap.add_argument("--run", action="store_true", help="also run two steps (OOM is reported)")
  ap.add_argument("--stop_after_oom", action="store_true",
                  help="per chunk setting, skip larger batches once one fails")
  ap.add_argument("--time_budget_s", type=float, default=0, help="stop starting new runs after")
  a = ap.parse_args()

  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from dpr_jax.training import sharding, steps
  from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder

  t_start = time.perf_counter()
  cfg = BertConfig(**ARCHS[a.arch])
  dtype = jnp.bfloat16 if a.dtype == "bfloat16" else jnp.float32
  enc = lambda seed: Encoder(cfg, dtype=dtype, remat=a.remat, rngs=nnx.Rngs(seed))
  graphdef, state = nnx.split(DualEncoder(enc(0), enc(1)))
  mesh = sharding.make_mesh()
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  schedule = optax.constant_schedule(1e-5)
  tx = steps.make_optimizer(schedule, weight_decay=0.0, clip_norm=2.0)
  init = jax.jit(lambda p: steps.init_state(p, tx, 0))
  rng = np.random.default_rng(0)
  dev = jax.devices()[0]
  for chunk in [int(c) for c in a.chunks.split(",")]:
    for b in [int(x) for x in a.batches.split(",")]:
      if a.time_budget_s and time.perf_counter() - t_start > a.time_budget_s:
        print(json.dumps({"skipped": "time budget", "batch": b, "grad_cache_chunk": chunk}))
        continue
      n_p = b * (1 + a.hard_negatives)
      host = {"q_ids": rng.integers(1000, cfg.vocab_size, (b, a.q_len)).astype(np.int32),
              "q_mask": np.ones((b, a.q_len), np.int32),
              "p_ids": rng.integers(1000, cfg.vocab_size, (n_p, a.p_len)).astype(np.int32),
              "p_mask": np.ones((n_p, a.p_len), np.int32)}
      row = {"bench": "grad_cache_memory", "arch": a.arch, "batch": b, "grad_cache_chunk": chunk,
             "q_len": a.q_len, "p_len": a.p_len, "hard_negatives": a.hard_negatives,
             "dtype": a.dtype, "remat": a.remat, "device": getattr(dev, "device_kind", "cpu")}
      try:
        step = steps.make_train_step(graphdef, tx, schedule, mesh, similarity="dot",
                                     temperature=1.0, grad_cache_chunk=chunk)
        st = init(jax.tree.map(jnp.copy, params))
        batch = sharding.host_to_global(host, mesh)
        t0 = time.perf_counter()
        compiled = step.lower(st, batch).compile()
        row["compile_s"] = round(time.perf_counter() - t0, 1)
        m = compiled.memory_analysis()
        peak = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                - m.alias_size_in_bytes)
        row.update(peak_gib=round(peak / 2**30, 3), temp_gib=round(m.temp_size_in_bytes / 2**30, 3),
                   argument_gib=round(m.argument_size_in_bytes / 2**30, 3))
        if a.run:
          times = []
          for _ in range(2):
            t0 = time.perf_counter()
            st, metrics = compiled(st, batch)
            metrics["train/loss"].block_until_ready()
            times.append(time.perf_counter() - t0)
          row.update(trains=True, step_s=round(times[-1], 3),
                     loss=round(float(metrics["train/loss"]), 4))
        del st, batch, compiled
      except Exception as e:  # noqa: BLE001 -- an OOM is a result here, not a failure
        msg = str(e).splitlines()[0][:200]
        row.update(trains=False, error=type(e).__name__ + ": " + msg)
      print(json.dumps(row), flush=True)
      if a.stop_after_oom and row.get("trains") is False:
        break


if __name__ == "__main__":
  main()
