"""Hard-negative mining from a trained retriever's results (DPR's second training round).

  python -m dpr_jax.mine --results results.json --passages FILE --out train-round2.jsonl.gz \\
      [--num_hard_negatives 5] [--match string|regex] [--mix train.jsonl.gz]

For each question of a results JSON (from `dpr_jax.retrieval.retrieve`, which keeps `positive_pids` when
the question file has gold passages): the positives are the gold passages (else the retrieved
passages that contain an answer), the hard negatives the top retrieved passages that contain no
answer and are not gold. Questions without a positive are skipped and counted. `--mix FILE`
appends, for each question, the hard negatives its record (same `id`) has in a DPR training file:
the BM25 negatives DPR mixed into its second round.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dpr_jax import cli
from dpr_jax.data.answers import PassageMatcher
from dpr_jax.data.textio import DataError, atomic_write, read_json
from dpr_jax.retrieval.evaluate import check_results
from dpr_jax.data.corpus import read_corpus


def mix_negatives(records: list[dict], others: dict) -> int:
  """Appends to each record the hard negatives of `others[record id]` (a DPR record) that it
  does not hold yet and that are not its positives; -> how many records had no match."""
  missing = 0
  for rec in records:
    other = others.get(rec.get("id"))
    if other is None:
      missing += 1
      continue
    seen = {c.get("passage_id") for c in rec["positive_ctxs"] + rec["hard_negative_ctxs"]}
    rec["hard_negative_ctxs"] += [c for c in other.get("hard_negative_ctxs", [])
                                  if c.get("passage_id") not in seen]
  return missing


def mine(results: list[dict], corpus, num_hard_negatives: int, match: str = "string"):
  """-> (DPR training records, stats). stats: `skipped_no_positive` (questions without a
  positive), and among the retrieved passages ranked above each question's last kept hard
  negative (all of them when it has too few): `dropped_positive` (gold passages, or the
  answer-bearing passage taken as the positive) and `dropped_has_answer` (other passages that
  contain an answer: DPR's mined "negatives" that would hold the answer)."""
  row = {pid: i for i, pid in enumerate(corpus.ids)}
  ctx = lambda pid: {"title": corpus.titles[row[pid]], "text": corpus.texts[row[pid]],
                     "passage_id": pid}
  records, matcher = [], PassageMatcher(corpus.texts, match)
  stats = {"skipped_no_positive": 0, "dropped_positive": 0, "dropped_has_answer": 0}
  for n, r in enumerate(results):
    for c in r["ctxs"]:
      if str(c["id"]) not in row:
        raise ValueError(f"record {n}: expected passage ids of {corpus.path}, found {c['id']!r}")
    answer_in = lambda pid: matcher(r["answers"], row[pid])
    gold = [str(p) for p in r.get("positive_pids") or []]
    positives = gold or [str(c["id"]) for c in r["ctxs"] if answer_in(str(c["id"]))][:1]
    if not positives:
      stats["skipped_no_positive"] += 1
      continue
    hard = []
    for c in r["ctxs"]:
      if len(hard) == num_hard_negatives:
        break
      pid = str(c["id"])
      if pid in positives:
        stats["dropped_positive"] += 1
      elif answer_in(pid):
        stats["dropped_has_answer"] += 1
      else:
        hard.append(pid)
    records.append({**({"id": r["id"]} if "id" in r else {}),
                    "question": r["question"], "answers": r["answers"],
                    "positive_ctxs": [ctx(p) for p in positives], "negative_ctxs": [],
                    "hard_negative_ctxs": [ctx(p) for p in hard]})
  return records, stats


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.mine", __doc__)
  ap.add_argument("--results", required=True, type=Path)
  cli.add_passages_arg(ap)
  ap.add_argument("--out", required=True, type=Path, help=".jsonl or .jsonl.gz")
  ap.add_argument("--num_hard_negatives", type=cli.non_negative_int, default=5)
  ap.add_argument("--match", choices=["string", "regex"], default="string")
  ap.add_argument("--mix", type=Path, help="DPR training file (records with `id`) whose hard "
                  "negatives are appended to each question's mined ones")
  a = ap.parse_args(argv)
  results = check_results(read_json(a.results, "retrieval results JSON"), a.results)
  try:
    records, stats = mine(results, read_corpus(a.passages), a.num_hard_negatives, a.match)
  except ValueError as e:
    raise DataError(f"{a.results}: {e}") from e
  mixed = ""
  if a.mix:
    from dpr_jax.data.examples import iter_records
    others = {r["id"]: r for _, r in iter_records(a.mix) if isinstance(r, dict) and "id" in r}
    try:
      missing = mix_negatives(records, others)
    except (AttributeError, TypeError) as e:
      raise DataError(f"{a.mix}: expected DPR records whose hard_negative_ctxs is a list of "
                      f"objects, found otherwise ({e})") from e
    if missing == len(records) and records:
      raise DataError(f"{a.mix}: no record's id matches a question of {a.results}")
    mixed = f"; {len(records) - missing} mixed with the negatives of {a.mix}, {missing} unmatched"
  with atomic_write(a.out) as f:
    for rec in records:
      f.write(json.dumps(rec, ensure_ascii=False) + "\n")
  print(f"{len(records)} questions written to {a.out}; {stats['skipped_no_positive']} skipped "
        f"without a positive; passed over as negatives: {stats['dropped_positive']} positives, "
        f"{stats['dropped_has_answer']} other passages containing an answer{mixed}")


if __name__ == "__main__":
  sys.exit(cli.mine())
