"""Run plots (panels, lines and legend checked on the matplotlib objects, against hand-written
metrics.jsonl files) and TensorBoard event files of a tiny training run, read back with
TensorBoard's own event reader."""
import json
import sys

import numpy as np
import pytest

from dpr_jax.tools import plot, scaling
from dpr_jax.training import events

A = [{"step": 0, "eval/num_passages": 50, "eval/top1": 0.1, "eval/loss": 0.9, "eval/avg_rank": 9.0},
     {"step": 1, "train/loss": 2.0, "train/lr": 1e-4, "train/examples_per_s": 30.0},
     {"step": 2, "train/loss": 1.5, "train/lr": 2e-4, "train/examples_per_s": 34.0},
     {"step": 2, "eval/avg_rank": 4.0, "eval/top1": 0.3, "eval/loss": 0.7,
      "eval/num_passages": 50}]
B = [{"step": 1, "train/loss": 2.2, "train/lr": 5e-5, "train/examples_per_s": 20.0},
     {"step": 2, "train/loss": 1.9, "train/lr": 1e-4, "train/examples_per_s": 21.0},
     {"step": 2, "eval/avg_rank": 6.0, "eval/top1": 0.2, "eval/top5": 0.6}]


def _run(tmp_path, name, rows):
  d = tmp_path / name
  d.mkdir()
  (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return d


def _lines(ax):
  return {l.get_label(): (list(l.get_xdata()), list(l.get_ydata())) for l in ax.get_lines()}


def test_one_run(tmp_path, capsys):
  a = _run(tmp_path, "lr1e-4", A)
  plot.main([str(a), "--out", str(tmp_path / "one.png")])
  panels = ["train/loss", "train/lr", "train/examples_per_s", "eval/avg_rank", "eval/top1",
            "eval/loss", "eval/num_passages"]
  assert json.loads(capsys.readouterr().out)["panels"] == panels
  png = tmp_path / "one.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  import matplotlib.image
  assert matplotlib.image.imread(png).shape[:2] == (1080, 1500)   # 3 rows x 3 panels at 100 dpi
  fig, _ = plot.plot_runs([a], tmp_path / "again.png")
  assert [ax.get_title() for ax in fig.axes] == panels
  assert _lines(fig.axes[0]) == {"lr1e-4": ([1, 2], [2.0, 1.5])}
  assert _lines(fig.axes[3]) == {"lr1e-4": ([0, 2], [9.0, 4.0])}


def test_two_runs_compared(tmp_path):
  a, b = _run(tmp_path, "lr1e-4", A), _run(tmp_path, "lr5e-5", B)
  fig, names = plot.plot_runs([a, b], tmp_path / "two.png", title="lr")
  assert names == ["train/loss", "train/lr", "train/examples_per_s", "eval/avg_rank",
                   "eval/top1", "eval/top5", "eval/loss", "eval/num_passages"]
  assert len(fig.axes) == 8
  assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 2, 2, 2, 1, 1, 1]
  assert _lines(fig.axes[1]) == {"lr1e-4": ([1, 2], [1e-4, 2e-4]), "lr5e-5": ([1, 2], [5e-5, 1e-4])}
  assert _lines(fig.axes[5]) == {"lr5e-5": ([2], [0.6])}
  assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lr1e-4", "lr5e-5"]
  colours = {l.get_label(): l.get_color() for ax in fig.axes for l in ax.get_lines()}
  assert len(colours) == 2 and len(set(colours.values())) == 2   # a run has one colour
  assert fig.axes[5].get_lines()[0].get_color() == fig.axes[0].get_lines()[1].get_color()
  assert fig.texts[0].get_text() == "lr"


def test_bad_line_names_file_and_line(tmp_path, capsys):
  a = _run(tmp_path, "bad", A)
  with open(a / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "train/loss": \n')
  from dpr_jax import cli
  assert cli.plot([str(a), "--out", str(tmp_path / "bad.png")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"error: {a / 'metrics.jsonl'}:5: expected a JSON object")
  assert "\n" not in err and not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*"))


def test_scaling_figure_through_render(tmp_path):
  rows = [{"batch": b, "top1": t, "top5": t + 0.2, "top20": t + 0.4, "examples_per_s": r}
          for b, t, r in ((8, 0.1, 10.0), (16, 0.2, 12.0), (32, 0.25, 13.0))]
  base = {"top1": 0.05, "top5": 0.1, "top20": 0.2}
  fig = scaling.plot(rows, tmp_path / "s.png", "t", base)
  acc, rate = fig.axes
  x, y = _lines(acc)["top-5"]
  assert x == [8, 16, 32]
  np.testing.assert_allclose(y, [30.0, 40.0, 45.0])
  dashed = [l for l in acc.get_lines() if l.get_linestyle() == "--" and len(l.get_xdata())]
  assert sorted(round(l.get_ydata()[0], 6) for l in dashed) == [5.0, 10.0, 20.0]
  assert _lines(rate) == {"examples/s": ([8, 16, 32], [10.0, 12.0, 13.0])}
  assert list(acc.get_xticks()) == [8, 16, 32]


def test_no_writer_without_tensorboardx(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  assert events.open_writer(tmp_path) is None


def _dpr_file(path, n, seed):
  r = np.random.default_rng(seed)
  words = "river mountain city king queen music war science ocean planet law art".split()
  text = lambda k: " ".join(r.choice(words, k))
  ctx = lambda: {"title": text(2), "text": text(12), "passage_id": str(r.integers(1e9))}
  with open(path, "w") as f:
    for _ in range(n):
      f.write(json.dumps({"question": text(5) + "?", "answers": ["x"], "positive_ctxs": [ctx()],
                          "negative_ctxs": [], "hard_negative_ctxs": [ctx()]}) + "\n")
  return path


def test_tiny_run_writes_tensorboard_events_and_plots(tmp_path):
  pytest.importorskip("tensorboardX")
  ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
  from dpr_jax.configs import tiny
  from dpr_jax.training import loop
  c = tiny.get_config()
  c.data.train_files = str(_dpr_file(tmp_path / "train.jsonl", 32, 0))
  c.data.dev_file = str(_dpr_file(tmp_path / "dev.jsonl", 16, 1))
  c.train.max_steps, c.train.save_every, c.eval.every = 3, 3, 3
  wd = tmp_path / "run"
  loop.train(c, wd)
  rows = plot.read_metrics(wd)
  assert list(wd.glob("events.out.tfevents.*"))
  acc = ea.EventAccumulator(str(wd))
  acc.Reload()
  for tag in ("train/loss", "train/lr", "train/examples_per_s", "eval/avg_rank", "eval/top1"):
    want = [(r["step"], r[tag]) for r in rows if tag in r]
    got = [(e.step, e.value) for e in acc.Scalars(tag)]
    assert [s for s, _ in got] == [s for s, _ in want] and want
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)
  fig, names = plot.plot_runs([wd], tmp_path / "curves.png")
  assert names[:3] == ["train/loss", "train/lr", "train/examples_per_s"]
  assert len(fig.axes[0].get_lines()[0].get_xdata()) == 3
