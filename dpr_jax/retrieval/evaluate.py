"""Top-k retrieval accuracy as DPR defines it, plus recall@k and MRR@k against gold passages.

  python -m dpr_jax.evaluate results.json [--match string|regex] [--k 1,5,20,100] [--out F]

Top-k accuracy: the fraction of questions with an answer in the **text** of one of the top-k
passages (DPR's `has_answer`: answer token sequence after its tokenizer and NFD normalisation,
or a regular expression). Recall@k (gold passages found in the top k, averaged over questions)
and MRR@k (reciprocal rank of the first gold passage) are added when results carry
`positive_pids`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dpr_jax import cli
from dpr_jax.data.answers import has_answer
from dpr_jax.data.results import check_results
from dpr_jax.data.textio import DataError, read_json, write_json


def evaluate(results: list[dict], ks=(1, 5, 20, 100), match: str = "string",
             recompute: bool = False, require_recall: bool = False) -> dict:
  """results: DPR results JSON (list). `recompute` re-runs answer matching on the texts
  (needed for `regex` unless the results were written with it). Errors (ValueError): no
  results, no answers, a k beyond the results' depth, texts missing for `recompute`, gold
  passages on some records only (or on none, with `require_recall`)."""
  if not results:
    raise ValueError("expected at least one question, found none")
  if min(ks) < 1:
    raise ValueError(f"--k: expected integers >= 1, found {min(ks)}")
  hits, gold = [], []
  for n, r in enumerate(results):
    if "ctxs" not in r or "answers" not in r:
      raise ValueError(f"record {n}: expected fields 'answers' and 'ctxs'")
    if recompute and any("text" not in c for c in r["ctxs"]):
      raise ValueError(f"record {n}: expected passage texts to match answers ({match}), "
                       "found none (results written with --no_text)")
    h = [has_answer(r["answers"], c["text"], match) if recompute or "has_answer" not in c
         else bool(c["has_answer"]) for c in r["ctxs"]]
    hits.append(h)
    if r.get("positive_pids") is not None:
      if not r["positive_pids"]:
        raise ValueError(f"record {n}: expected gold passages in 'positive_pids', found []")
      gold.append((set(map(str, r["positive_pids"])), [str(c["id"]) for c in r["ctxs"]]))
    elif gold or (require_recall and n == 0):
      raise ValueError(f"record {n}: expected 'positive_pids' (gold passages) for recall, "
                       "found none")
  if gold and len(gold) != len(results):
    raise ValueError(f"record {len(gold)}: expected 'positive_pids' (gold passages) for "
                     "recall, found none")
  depth = max(len(h) for h in hits)
  if max(ks) > depth:
    raise ValueError(f"--k: expected at most the results' depth {depth}, found {max(ks)}")
  if not any(r["answers"] for r in results):
    raise ValueError("expected answers to compute accuracy, found none on any question")
  out = {"questions": len(results), "match": match}
  for k in ks:
    out[f"top{k}"] = float(np.mean([any(h[:k]) for h in hits]))
  for k in ks if gold else ():
    out[f"recall@{k}"] = float(np.mean([len(g & set(ids[:k])) / len(g) for g, ids in gold]))
    out[f"mrr@{k}"] = float(np.mean([next((1 / (i + 1) for i, p in enumerate(ids[:k]) if p in g),
                                          0.0) for g, ids in gold]))
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
  ap = cli.Parser("python -m dpr_jax.evaluate", __doc__)
  ap.add_argument("results", type=Path)
  ap.add_argument("--match", choices=["string", "regex"], default="string")
  ap.add_argument("--k", type=cli.int_list, default=None,
                  help="comma-separated depths, each >= 1 and at most the results' depth "
                  "(default: those of 1,5,20,100 within it)")
  ap.add_argument("--recall", action="store_true",
                  help="require recall@k and MRR@k (results with positive_pids)")
  ap.add_argument("--out", type=Path, default=None, help="metrics JSON (default results.metrics.json)")
  a = ap.parse_args(argv)
  results = check_results(read_json(a.results, "retrieval results JSON"), a.results)
  depth = max(len(r["ctxs"]) for r in results)
  ks = a.k or [k for k in (1, 5, 20, 100) if k <= depth] or [max(depth, 1)]
  try:
    m = evaluate(results, ks, a.match, recompute=a.match == "regex", require_recall=a.recall)
  except ValueError as e:
    raise DataError(f"{a.results}: {e}") from e
  print(format_table(m))
  write_json(a.out or a.results.with_suffix(".metrics.json"), m)


if __name__ == "__main__":
  sys.exit(cli.evaluate())
