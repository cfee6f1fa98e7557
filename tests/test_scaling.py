"""The scaling study's per-run configs and its CSV/plot summary (the training runs themselves are
tests/test_train.py's subject)."""
import json

from dpr_jax.configs import scaling as scaling_config
from dpr_jax.tools import scaling


def test_run_config_keeps_examples_fixed_and_caches_only_large_batches(tmp_path):
  base = scaling_config.get_config()
  rows = {b: scaling.run_config(base, b, 1536, 32, 8, tmp_path) for b in (8, 32, 64)}
  assert [rows[b].train.max_steps for b in (8, 32, 64)] == [192, 48, 24]
  assert all(rows[b].train.global_batch * rows[b].train.max_steps == 1536 for b in rows)
  assert [rows[b].train.grad_cache_chunk for b in (8, 32, 64)] == [0, 0, 4]  # 32 / 8 devices
  assert rows[8].optim.warmup_steps == 19 and rows[64].optim.warmup_steps == 2
  assert rows[8].eval.every == 192 and not rows[8].eval.at_start
  assert rows[8].data.prepare_dir == str(tmp_path / "data")  # one prepared copy for all runs
  assert base.train.global_batch == 16  # the base config is not modified


def test_summarize_and_plot(tmp_path):
  base = scaling_config.get_config()
  rows = []
  for b, rank in ((8, 3.0), (16, 2.5)):
    c = scaling.run_config(base, b, 64, 0, 1, tmp_path)
    wd = tmp_path / f"batch{b}"
    wd.mkdir()
    lines = [{"step": 1, "train/loss": 1.0, "train/examples_per_s": 4.0},
             {"step": 2, "train/loss": 0.9, "train/examples_per_s": 6.0},
             {"step": c.train.max_steps, "eval/avg_rank": rank, "eval/top1": 0.5,
              "eval/top5": 0.8, "eval/top20": 0.95, "eval/num_passages": 1500}]
    (wd / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows.append(scaling.summarize(wd, b, c, 12.0))
  assert rows[0]["steps"] == 8 and rows[1]["steps"] == 4
  assert rows[0]["examples_per_s"] == 5.0 and rows[1]["avg_rank"] == 2.5
  scaling.plot(rows, tmp_path / "s.png", "t")
  assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
