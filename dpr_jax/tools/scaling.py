"""The batch-size scaling study (the DPR paper's figure for in-batch negatives), on any config.

  python -m dpr_jax.scaling --config configs/scaling.py --batch_sizes 8,16,32,64 \\
      --examples 1536 --workdir runs/scaling [--grad_cache_above 32] [--config.optim.lr=...]

One training run per global batch size, each on the same number of training examples (so a
larger batch takes fewer steps; the learning rate stays fixed, warm-up is 10 % of the steps), evaluated at
the end on the config's validation set: the average rank of each question's positive among all
validation passages and the top-1/5/20 accuracy of that ranking. Batches above
`--grad_cache_above` train with gradient caching (same gradients, less memory). Runs live in
`<workdir>/batch<B>/` and resume like any training run; the study writes `<workdir>/scaling.csv`
and `<workdir>/scaling.png` (top-k and examples/s against batch size) and `<workdir>/curves.png`
(every run's training curves, `dpr_jax.plot`); `<workdir>/untrained/` holds
the initialisation's evaluation (CSV row with batch 0). Re-running skips finished runs.
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dpr_jax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "base config (configs/*.py or a bare name)")
_WORKDIR = flags.DEFINE_string("workdir", None, "one sub-directory per batch size", required=True)
_BATCHES = flags.DEFINE_list("batch_sizes", ["8", "16", "32", "64"], "global batch sizes")
_EXAMPLES = flags.DEFINE_integer("examples", 1536, "training questions per run (steps = this / batch)")
_BASELINE = flags.DEFINE_bool("baseline", True, "also evaluate the untrained initialisation "
                               "(drawn as a dashed line)")
_CACHE_ABOVE = flags.DEFINE_integer("grad_cache_above", 0,
                                    "batches larger than this train with grad_cache_chunk = this "
                                    "divided by the device count (0: never)")

FIELDS = ["batch", "steps", "examples", "grad_cache_chunk", "wall_s", "examples_per_s",
          "avg_rank", "top1", "top5", "top20", "num_val_questions", "num_val_passages"]


def run_config(base, batch: int, examples: int, cache_above: int, n_devices: int,
               root: Path, warmup_fraction: float = 0.1):
  """The base config for one batch size: same examples, same warm-up fraction, eval at the end;
  data prepared once for all runs."""
  c = copy.deepcopy(base)
  c.unlock()
  if c.data.prepare and not c.data.prepare_dir:
    c.data.prepare_dir = str(root / "data")
  steps = max(1, examples // batch)
  c.train.global_batch = batch
  c.train.max_steps = steps
  c.train.save_every = steps
  c.train.log_every = max(1, min(c.train.log_every, steps))
  c.optim.warmup_steps = max(1, round(warmup_fraction * steps))
  c.eval.every = steps
  c.eval.at_start = False
  c.train.grad_cache_chunk = (cache_above // n_devices
                              if cache_above and batch > cache_above else 0)
  return c


def summarize(workdir: Path, batch: int, c, wall_s: float) -> dict:
  """One CSV row from a finished run's metrics.jsonl."""
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines() if l]
  ev = [r for r in rows if "eval/avg_rank" in r]
  if not ev:
    raise RuntimeError(f"{workdir / 'metrics.jsonl'}: no validation record; the run did not finish")
  rates = [r["train/examples_per_s"] for r in rows if "train/examples_per_s" in r]
  last = ev[-1]
  return {"batch": batch, "steps": c.train.max_steps, "examples": c.train.max_steps * batch,
          "grad_cache_chunk": c.train.grad_cache_chunk, "wall_s": round(wall_s, 1),
          "examples_per_s": round(statistics.median(rates), 3) if rates else "",
          "avg_rank": round(last["eval/avg_rank"], 3), "top1": round(last["eval/top1"], 4),
          "top5": round(last["eval/top5"], 4), "top20": round(last["eval/top20"], 4),
          "num_val_questions": c.eval.max_questions,
          "num_val_passages": int(last["eval/num_passages"])}


def plot(rows: list[dict], path: Path, title: str, baseline: dict | None = None):
  """Top-k against batch (left), examples/s against batch (right); `baseline` (the untrained
  model, CSV batch 0) as dashed lines. Drawn by `dpr_jax.tools.plot.render`; returns the Figure."""
  from dpr_jax.tools.plot import Line, Panel, render
  b = [r["batch"] for r in rows]
  topk = [Line(f"top-{k[3:]}", b, [100 * r[k] for r in rows], fmt)
          for k, fmt in (("top20", "o-"), ("top5", "s-"), ("top1", "^-"))]
  hlines = []
  if baseline:
    hlines = [(100 * baseline[k], i) for i, k in enumerate(("top20", "top5", "top1"))]
    topk.append(Line("untrained", [], [], "k--"))
  x = "global batch (questions)"
  rate = Line("examples/s", b, [r["examples_per_s"] for r in rows], "o-")
  return render([Panel(title, x, "validation accuracy (%)", topk, hlines, b),
                 Panel("throughput", x, "training examples / s", [rate], [], b)], path, ncols=2)


def _baseline(base, root: Path) -> dict:
  """The initialisation, evaluated on the same validation set: one step at learning rate 0
  (parameters unchanged), then the usual end-of-run validation."""
  from dpr_jax.training import loop as train_lib
  c = run_config(base, base.train.global_batch, base.train.global_batch, 0, 1, root)
  c.optim.lr = 0.0
  wd = root / "untrained"
  if not (wd / "metrics.jsonl").is_file():
    train_lib.train(c, wd)
  return summarize(wd, 0, c, 0.0)


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("dpr_jax").setLevel(logging.INFO)
  import jax
  from dpr_jax.training import loop as train_lib
  root = Path(_WORKDIR.value).absolute()
  root.mkdir(parents=True, exist_ok=True)
  rows = []
  for batch in [int(b) for b in _BATCHES.value]:
    c = run_config(_CONFIG.value, batch, _EXAMPLES.value, _CACHE_ABOVE.value,
                   jax.device_count(), root)
    wd = root / f"batch{batch}"
    done = wd / "scaling_row.json"   # a finished run is not re-run (the study resumes)
    if done.is_file():
      rows.append(json.loads(done.read_text()))
    else:
      t0 = time.time()
      train_lib.train(c, wd)
      rows.append(summarize(wd, batch, c, time.time() - t0))
      done.write_text(json.dumps(rows[-1]))
    print(json.dumps(rows[-1]), flush=True)
    _write_csv(root / "scaling.csv", rows)
  base = _baseline(_CONFIG.value, root) if _BASELINE.value else None
  if base:
    print(json.dumps({"untrained": base}), flush=True)
    _write_csv(root / "scaling.csv", rows + [base])
  plot(rows, root / "scaling.png", f"{_EXAMPLES.value} training questions per run", base)
  from dpr_jax.tools.plot import plot_runs
  plot_runs([root / f"batch{r['batch']}" for r in rows], root / "curves.png")
  print(f"wrote {root / 'scaling.csv'}, {root / 'scaling.png'} and {root / 'curves.png'}")


def _write_csv(path: Path, rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, FIELDS)
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
  from dpr_jax import cpu_malloc
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  flags.mark_flags_as_required(["config"])
  app.run(main, argv=config_lib.resolve_config_arg(sys.argv))
