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
import statistics
import sys
import time
from pathlib import Path

from dpr_jax import cli
from dpr_jax.data.textio import atomic_write, write_json

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


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.scaling", __doc__)
  ap.add_argument("--workdir", required=True, help="one sub-directory per batch size")
  ap.add_argument("--batch_sizes", type=cli.int_list, default=[8, 16, 32, 64],
                  help="global batch sizes, comma-separated")
  ap.add_argument("--examples", type=cli.positive_int, default=1536,
                  help="training questions per run (steps = this / batch)")
  ap.add_argument("--baseline", action=cli.on_off, default=True,
                  help="also evaluate the untrained initialisation (drawn as a dashed line)")
  ap.add_argument("--grad_cache_above", type=cli.non_negative_int, default=0,
                  help="batches larger than this train with grad_cache_chunk = this divided by "
                  "the device count (0: never)")
  a, config = cli.parse_with_config(ap, argv)
  import jax
  from dpr_jax.training import loop as train_lib
  root = Path(a.workdir).absolute()
  root.mkdir(parents=True, exist_ok=True)
  rows = []
  for batch in a.batch_sizes:
    c = run_config(config, batch, a.examples, a.grad_cache_above, jax.device_count(), root)
    wd = root / f"batch{batch}"
    done = wd / "scaling_row.json"   # a finished run is not re-run (the study resumes)
    if done.is_file():
      rows.append(json.loads(done.read_text()))
    else:
      t0 = time.time()
      train_lib.train(c, wd)
      rows.append(summarize(wd, batch, c, time.time() - t0))
      write_json(done, rows[-1], indent=None)
    print(json.dumps(rows[-1]), flush=True)
    _write_csv(root / "scaling.csv", rows)
  base = _baseline(config, root) if a.baseline else None
  if base:
    print(json.dumps({"untrained": base}), flush=True)
    _write_csv(root / "scaling.csv", rows + [base])
  plot(rows, root / "scaling.png", f"{a.examples} training questions per run", base)
  from dpr_jax.tools.plot import plot_runs
  plot_runs([root / f"batch{r['batch']}" for r in rows], root / "curves.png")
  print(f"wrote {root / 'scaling.csv'}, {root / 'scaling.png'} and {root / 'curves.png'}")


def _write_csv(path: Path, rows: list[dict]) -> None:
  with atomic_write(path) as f:
    w = csv.DictWriter(f, FIELDS)
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
  sys.exit(cli.scaling())
