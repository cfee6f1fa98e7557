"""Top-k retrieval accuracy as DPR defines it, plus recall@k and MRR@k against gold passages,
and any ranking measure of `ir-measures` against relevance judgments.

  python -m dpr_jax.evaluate results.json [--match string|regex] [--k 1,5,20,100] [--out F]
  python -m dpr_jax.evaluate RESULTS --qrels QRELS [--metrics nDCG@10,RR@10,R@100,AP]

Top-k accuracy: the fraction of questions with an answer in the **text** of one of the top-k
passages (DPR's `has_answer`: answer token sequence after its tokenizer and NFD normalisation,
or a regular expression). Recall@k (gold passages found in the top k, averaged over questions)
and MRR@k (reciprocal rank of the first gold passage) are added when results carry
`positive_pids`; they are ir-measures' R@k and RR@k (`dpr_jax.retrieval.measures`).

RESULTS is DPR's results JSON or a TREC run file (`qid Q0 docid rank score tag`, as written by
`retrieve --format trec`). `--qrels` (TREC or BEIR layout, graded relevance kept) or `--metrics`
adds ir-measures' measures; without `--qrels` a results JSON's `positive_pids` are the judgments
(relevance 1). A TREC run carries no answer strings, so it is scored by `--qrels` only.
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
  if gold:
    from dpr_jax.retrieval.measures import recall_mrr
    out.update(recall_mrr(gold, ks))
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


def run_of(results: list[dict]) -> dict[str, list[str]]:
  """DPR results as a ranked run, `{query id: [passage id, ...]}` (query ids as in
  `trec.run_qid`)."""
  from dpr_jax.data.trec import run_qid
  return {run_qid(r, n): list(dict.fromkeys(str(c["id"]) for c in r["ctxs"]))
          for n, r in enumerate(results)}


def library_measures(run: dict, qrels_path, results, metrics: str, source) -> dict:
  """ir-measures' `metrics` of `run` against `--qrels` (else the results' `positive_pids`,
  relevance 1)."""
  from dpr_jax.data import trec
  from dpr_jax.retrieval.measures import measure
  if qrels_path is not None:
    qrels = trec.read_qrels(qrels_path)
  else:
    qrels = trec.qrels_from_results(results or [])
    if not qrels:
      raise DataError(f"{source}: expected --qrels FILE or results with 'positive_pids' "
                      "(gold passages) for --metrics, found neither")
  try:
    return measure(qrels, run, metrics)
  except ValueError as e:
    raise DataError(f"{source}: {e}") from e


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.evaluate", __doc__)
  ap.add_argument("results", type=Path, help="DPR results JSON or a TREC run file")
  ap.add_argument("--match", choices=["string", "regex"], default="string")
  ap.add_argument("--k", type=cli.int_list, default=None,
                  help="comma-separated depths, each >= 1 and at most the results' depth "
                  "(default: those of 1,5,20,100 within it)")
  ap.add_argument("--recall", action="store_true",
                  help="require recall@k and MRR@k (results with positive_pids)")
  ap.add_argument("--qrels", type=Path, default=None,
                  help="relevance judgments, TREC (qid 0 docid rel) or BEIR (query-id, "
                  "corpus-id, score, with that header); graded relevance is kept")
  ap.add_argument("--metrics", default=None,
                  help="ir-measures measures, comma-separated (e.g. nDCG@10,RR@10,R@100,AP); "
                  "default with --qrels or a TREC run: nDCG@10,RR@10,R@100,AP")
  ap.add_argument("--out", type=Path, default=None, help="metrics JSON (default: RESULTS with .metrics.json in place of .json; "
                  "a TREC run's: RESULTS.metrics.json, e.g. run.trec.metrics.json)")
  a = ap.parse_args(argv)
  from dpr_jax.data import trec
  from dpr_jax.retrieval.measures import DEFAULT, format_measures, parse_measures
  metrics = a.metrics
  if metrics is not None:
    parse_measures(metrics)  # a misspelt measure fails before anything is read
  m, results = {}, None
  if trec.is_trec_run(a.results):
    if a.qrels is None:
      raise cli.UsageError(f"{a.results}: a TREC run has no answers or gold passages: expected "
                           "--qrels FILE, found none")
    run = trec.read_run(a.results)
  else:
    results = check_results(read_json(a.results, "retrieval results JSON"), a.results)
    run = run_of(results)
    if any(r["answers"] for r in results) or metrics is None and a.qrels is None:
      m = _dpr_metrics(results, a)
      print(format_table(m))
  if metrics is not None or a.qrels is not None or results is None:
    found = library_measures(run, a.qrels, results, metrics or DEFAULT, a.results)
    print(format_measures(found, f"ir-measures, {len(run)} queries in the run, against "
                          f"{a.qrels or 'positive_pids'}"))
    m.update(found)
  default = (a.results.with_name(a.results.name + ".metrics.json") if results is None
             else a.results.with_suffix(".metrics.json"))  # run.trec beside run.json
  write_json(a.out or default, m)


def _dpr_metrics(results: list[dict], a) -> dict:
  depth = max(len(r["ctxs"]) for r in results)
  ks = a.k or [k for k in (1, 5, 20, 100) if k <= depth] or [max(depth, 1)]
  try:
    return evaluate(results, ks, a.match, recompute=a.match == "regex", require_recall=a.recall)
  except ValueError as e:
    raise DataError(f"{a.results}: {e}") from e


if __name__ == "__main__":
  sys.exit(cli.evaluate())
