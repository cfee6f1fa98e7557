"""Ranking metrics against relevance judgments, computed by `ir-measures` (which wraps
`pytrec_eval`, trec_eval's code): nDCG@k, RR@k, R@k, AP, P@k and every other measure it names.

Runs are ranked lists (`{query id: [passage id, best first]}`); they reach the library with
scores that reproduce that order exactly, so ties in the original scores keep the run's own
order. Each measure is averaged over the judged queries; a judged query the run does not
answer counts 0 (trec_eval's `-c`), queries the judgments do not name are left out.
DPR's answer-string top-k accuracy has no library equivalent and stays in `evaluate`.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DEFAULT = "nDCG@10,RR@10,R@100,AP"


def parse_measures(text: str) -> list:
  """`nDCG@10,RR@10` -> ir-measures measures; ValueError naming the first unknown one."""
  import ir_measures
  names = [t.strip() for t in text.split(",") if t.strip()]
  if not names:
    raise ValueError(f"--metrics: expected measures such as {DEFAULT}, found {text!r}")
  out = []
  for name in names:
    try:
      out.append(ir_measures.parse_measure(name))
    except (ValueError, NameError, SyntaxError, TypeError, AttributeError):
      raise ValueError(f"--metrics: expected a measure of ir-measures (such as {DEFAULT}), "
                       f"found {name!r}") from None
  return out


def _scored(run: dict[str, list[str]]) -> dict[str, dict[str, float]]:
  return {q: {p: float(len(ids) - i) for i, p in enumerate(ids)} for q, ids in run.items()}


def measure(qrels: dict[str, dict[str, int]], run: dict[str, list[str]], measures) -> dict:
  """{measure name: mean over the judged queries} (see the module for the averaging)."""
  import ir_measures
  if isinstance(measures, str) or all(isinstance(m, str) for m in measures):
    measures = parse_measures(measures if isinstance(measures, str) else ",".join(measures))
  if not qrels:
    raise ValueError("expected relevance judgments (qrels), found none")
  run = {q: ids for q, ids in run.items() if q in qrels}
  if not run:
    raise ValueError(f"expected a run answering the judged queries, found none of the "
                     f"{len(qrels)} (query ids differ?)")
  missing = len(qrels) - len(run)
  if missing:
    log.warning("%d of %d judged queries have no retrieved passage; they count 0", missing,
                len(qrels))
  sums = {str(m): 0.0 for m in measures}
  for metric in ir_measures.iter_calc(measures, qrels, _scored(run)):
    sums[str(metric.measure)] += metric.value
  return {name: total / len(qrels) for name, total in sums.items()}


def recall_mrr(gold: list[tuple[set, list[str]]], ks) -> dict:
  """recall@k (R@k) and MRR@k (RR@k) of ranked lists against their gold sets (relevance 1),
  for each k: the recall and MRR rows of DPR's `evaluate` table."""
  qrels = {str(n): {p: 1 for p in g} for n, (g, _) in enumerate(gold)}
  run = {str(n): list(dict.fromkeys(ids)) for n, (_, ids) in enumerate(gold)}
  m = measure(qrels, run, [f"{kind}@{k}" for k in ks for kind in ("R", "RR")])
  out = {}
  for k in ks:
    out[f"recall@{k}"] = m[f"R@{k}"]
  for k in ks:
    out[f"mrr@{k}"] = m[f"RR@{k}"]
  return out


def format_measures(m: dict, title: str) -> str:
  """One line per measure, in percent."""
  width = max(map(len, m)) + 2
  return "\n".join([title] + [f"{name:<{width}}{100 * v:>8.2f}" for name, v in m.items()])
