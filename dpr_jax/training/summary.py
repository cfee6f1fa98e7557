"""The lines a retriever's training ends with: the validation top-1, top-5 and average rank at
the first and the last validation of `metrics.jsonl`, and the command that draws the curves."""
from __future__ import annotations

import json
from pathlib import Path


def _evals(path: Path) -> list[dict]:
  if not path.is_file():
    return []
  rows = (json.loads(l) for l in path.read_text().splitlines() if l.strip())
  return [r for r in rows if "eval/avg_rank" in r]


def before_after(workdir) -> list[str]:
  """The summary lines of `workdir` (as the user named it); none without a validation."""
  evals = _evals(Path(workdir) / "metrics.jsonl")
  if not evals:
    return []
  first, last = evals[0], evals[-1]
  n = last.get("eval/num_passages")
  among = f" among {n:.0f} passages" if n else ""
  lines = [f"validation: each held-out question's positive ranked{among} (rank 0: first)",
           f"  {'step':>6}  {'top-1':>7}  {'top-5':>7}  {'average rank':>12}"]
  for r in ([first, last] if last is not first else [first]):
    lines.append(f"  {r['step']:>6}  {100 * r.get('eval/top1', float('nan')):>6.1f}%  "
                 f"{100 * r.get('eval/top5', float('nan')):>6.1f}%  {r['eval/avg_rank']:>12.2f}")
  lines.append(f"curves: python -m dpr_jax.plot {workdir} --out {Path(workdir) / 'curves.png'}")
  return lines


def print_before_after(workdir) -> None:
  """Prints `before_after(workdir)` on stdout, from process 0 only."""
  import jax
  if jax.process_index() == 0:
    for line in before_after(workdir):
      print(line, flush=True)
