"""The lines a retriever's training ends with (dpr_jax.training.summary), on a hand-written
metrics.jsonl."""
import json

from dpr_jax.training import summary


def test_first_and_last_validation_and_the_plot_command(tmp_path):
  rows = [{"step": 0, "eval/avg_rank": 2.18, "eval/top1": 0.7333, "eval/top5": 0.95,
           "eval/num_passages": 531},
          {"step": 10, "train/loss": 0.5},
          {"step": 30, "eval/avg_rank": 1.75, "eval/top1": 0.7667, "eval/top5": 0.96},
          {"step": 60, "eval/avg_rank": 1.77, "eval/top1": 0.763, "eval/top5": 0.97,
           "eval/num_passages": 531},
          {"step": 60, "train/loss": 0.4}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert summary.before_after(tmp_path) == [
      "validation: each held-out question's positive ranked among 531 passages (rank 0: first)",
      "    step    top-1    top-5  average rank",
      "       0    73.3%    95.0%          2.18",
      "      60    76.3%    97.0%          1.77",
      f"curves: python -m dpr_jax.plot {tmp_path} --out {tmp_path / 'curves.png'}"]


def test_nothing_without_a_validation(tmp_path):
  assert summary.before_after(tmp_path) == []
  (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/loss": 1.0}) + "\n")
  assert summary.before_after(tmp_path) == []
