"""Top-k retrieval accuracy as DPR defines it, plus recall@k and MRR@k against gold passages.

  python -m dpr_jax.evaluate results.json [--match string|regex] [--k 1,5,20,100] [--out F]

Top-k accuracy: the fraction of questions with an answer in the **text** of one of the top-k
passages (DPR's `has_answer`: answer token sequence after its tokenizer and NFD normalisation,
or a regular expression). Recall@k (gold passages found in the top k, averaged over questions)
and MRR@k (reciprocal rank of the first gold passage) are added when results carry
`positive_pids`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dpr_jax.data.answers import has_answer


def evaluate(results: list[dict], ks=(1, 5, 20, 100), match: str = "string",
             recompute: bool = False) -> dict:
  """results: DPR results JSON (list). `recompute` re-runs answer matching on the texts
  (needed for `regex` unless the results were written with it)."""
  hits, gold = [], []
  for n, r in enumerate(results):
    if "ctxs" not in r or "answers" not in r:
      raise ValueError(f"results[{n}]: expected fields 'answers' and 'ctxs'")
    h = [has_answer(r["answers"], c["text"], match) if recompute or "has_answer" not in c
         else bool(c["has_answer"]) for c in r["ctxs"]]
    hits.append(h)
    if r.get("positive_pids") is not None:
      gold.append((set(map(str, r["positive_pids"])), [str(c["id"]) for c in r["ctxs"]]))
  out = {"questions": len(results), "match": match}
  for k in ks:
    out[f"top{k}"] = float(np.mean([any(h[:k]) for h in hits])) if hits else 0.0
  if gold and len(gold) == len(results):
    for k in ks:
      out[f"recall@{k}"] = float(np.mean([len(g & set(ids[:k])) / len(g) for g, ids in gold]))
      out[f"mrr@{k}"] = float(np.mean([next((1 / (i + 1) for i, p in enumerate(ids[:k]) if p in g), 0.0)
                                       for g, ids in gold]))
  return out


def format_table(m: dict) -> str:
  ks = [k[3:] for k in m if k.startswith("top")]
  rows = [("top-k accuracy", "top")] + [(n, p) for n, p in (("recall@k", "recall@"), ("MRR@k", "mrr@"))
                                        if f"{p}{ks[0]}" in m]
  head = f"{'k':<16}" + "".join(f"{k:>8}" for k in ks)
  lines = [f"{m['questions']} questions, match={m['match']}", head]
  for name, p in rows:
    lines.append(f"{name:<16}" + "".join(f"{100 * m[f'{p}{k}']:>8.2f}" for k in ks))
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(prog="python -m dpr_jax.evaluate", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("results", type=Path)
  ap.add_argument("--match", choices=["string", "regex"], default="string")
  ap.add_argument("--k", default="1,5,20,100")
  ap.add_argument("--out", type=Path, default=None, help="metrics JSON (default results.metrics.json)")
  a = ap.parse_args(argv)
  try:
    results = json.loads(a.results.read_text())
  except json.JSONDecodeError as e:
    raise SystemExit(f"{a.results}: not valid JSON ({e})")
  m = evaluate(results, [int(k) for k in a.k.split(",")], a.match, recompute=a.match == "regex")
  print(format_table(m))
  out = a.out or a.results.with_suffix(".metrics.json")
  out.write_text(json.dumps(m, indent=1))


if __name__ == "__main__":
  sys.exit(main())
