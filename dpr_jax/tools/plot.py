"""Training curves of one or several runs, one panel per metric, one line per run.

  python -m dpr_jax.plot runs/squad [runs/squad-lr1e-4 ...] --out curves.png [--title T]

Reads each workdir's metrics.jsonl (as `dpr_jax.training.loop` and the reader's training write
it) and draws, against the step: the training loss, the learning rate, the throughput
(`train/examples_per_s`, or `train/questions_per_s` for a reader) and every `eval/` metric found
in any run. One colour per run in every panel; the legend below the panels names each run by
its folder name. `render` (panels in, PNG out) is the drawing code the batch-scaling study's
figure uses too.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

TRAIN_PANELS = ("train/loss", "train/lr", "train/examples_per_s", "train/questions_per_s")
# Retrieval and reader quality first; counts (validation-set sizes) last; others by name.
EVAL_FIRST = ("eval/avg_rank", "eval/top1", "eval/top5", "eval/top20", "eval/em", "eval/f1")
EVAL_LAST = ("eval/num_passages", "eval/questions")


class PlotError(ValueError):
  pass


@dataclasses.dataclass
class Line:
  label: str
  x: list
  y: list
  fmt: str = "-"
  color: str | None = None


@dataclasses.dataclass
class Panel:
  title: str
  xlabel: str
  ylabel: str
  lines: list[Line]
  hlines: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (y, line index)
  log2_xticks: list | None = None   # log2 x axis with these ticks


def read_metrics(workdir) -> list[dict]:
  """metrics.jsonl -> its records; an unreadable line is a PlotError naming file and line."""
  f = Path(workdir) / "metrics.jsonl"
  if not f.is_file():
    raise PlotError(f"{f}: not found; expected a training workdir holding metrics.jsonl")
  rows = []
  for i, line in enumerate(f.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      r = json.loads(line)
    except json.JSONDecodeError as e:
      raise PlotError(f"{f}:{i}: expected a JSON object, found {line[:60]!r} ({e.msg})") from e
    if not isinstance(r, dict) or not isinstance(r.get("step"), int):
      raise PlotError(f"{f}:{i}: expected a JSON object with an integer 'step', found "
                      f"{line[:60]!r}")
    rows.append(r)
  return rows


def run_names(paths) -> list[str]:
  """Folder names; the paths as given where two folders share a name."""
  names = [Path(p).absolute().name for p in paths]
  return names if len(set(names)) == len(names) else [str(p) for p in paths]


def metric_names(runs: list[list[dict]]) -> list[str]:
  keys = {k for rows in runs for r in rows for k in r}
  rest = sorted(k for k in keys if k.startswith("eval/") and k not in EVAL_FIRST + EVAL_LAST)
  return [k for k in TRAIN_PANELS + EVAL_FIRST + tuple(rest) + EVAL_LAST if k in keys]


def curve_panels(runs: list[list[dict]], names: list[str]) -> list[Panel]:
  """One panel per metric; in each, one line per run that has it (steps in order)."""
  panels = []
  for m in metric_names(runs):
    lines = []
    for i, (name, rows) in enumerate(zip(names, runs)):
      pts = sorted((r["step"], r[m]) for r in rows if m in r)
      if pts:     # a run keeps its colour in every panel
        lines.append(Line(name, [p[0] for p in pts], [p[1] for p in pts],
                          "o-" if m.startswith("eval/") else "-", f"C{i % 10}"))
    panels.append(Panel(m, "step", m.split("/", 1)[1], lines))
  return panels


def render(panels: list[Panel], out, *, title: str | None = None, ncols: int = 3,
           legend: str = "panel"):
  """Panels -> a PNG at `out` (written whole: a temporary file renamed). Returns the Figure.
  `legend`: `panel` (one per panel with several lines) or `figure` (one for all, by label)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  if not panels:
    raise PlotError("nothing to plot: no metric found")
  ncols = min(ncols, len(panels))
  nrows = math.ceil(len(panels) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False,
                           layout="constrained")
  handles = {}
  for ax, p in zip(axes.flat, panels):
    drawn = [ax.plot(l.x, l.y, l.fmt, label=l.label, ms=3,
                     **({"color": l.color} if l.color else {}))[0] for l in p.lines]
    handles.update({h.get_label(): h for h in drawn if h.get_label() not in handles})
    for y, i in p.hlines:
      ax.axhline(y, ls="--", lw=1, color=drawn[i].get_color())
    if p.log2_xticks:
      ax.set_xscale("log", base=2)
      ax.minorticks_off()
      ax.set_xticks(p.log2_xticks, [str(x) for x in p.log2_xticks])
    ax.set(title=p.title, xlabel=p.xlabel, ylabel=p.ylabel)
    if legend == "panel" and (len(p.lines) > 1 or p.hlines):
      ax.legend(fontsize=8)
  for ax in list(axes.flat)[len(panels):]:
    fig.delaxes(ax)
  if legend == "figure":
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(len(handles), 4))
  if title:
    fig.suptitle(title)
  out = Path(out)
  tmp = out.with_name(f".{out.name}.{os.getpid()}.png")
  fig.savefig(tmp, dpi=100)
  os.replace(tmp, out)
  plt.close(fig)
  return fig


def plot_runs(paths, out, title: str | None = None):
  """Workdirs -> PNG of their curves. Returns (Figure, metric names)."""
  runs = [read_metrics(p) for p in paths]
  panels = curve_panels(runs, run_names(paths))
  return render(panels, out, title=title, legend="figure"), [p.title for p in panels]


def main(argv=None):
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.plot", __doc__)
  ap.add_argument("runs", nargs="+", help="training workdirs (each holding metrics.jsonl)")
  ap.add_argument("--out", required=True, help="PNG file to write")
  ap.add_argument("--title", help="figure title")
  a = ap.parse_args(argv)
  _, metrics = plot_runs(a.runs, a.out, a.title)
  print(json.dumps({"out": str(a.out), "runs": run_names(a.runs), "panels": metrics}))


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.plot())
