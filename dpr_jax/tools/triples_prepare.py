r"""DPR training records from triples by id (MS MARCO, Tevatron, sentence-transformers, BEIR).

    python -m dpr_jax.prepare triples --triples TRIPLES --passages CORPUS --questions QUERIES \
        --out train.jsonl.gz [--max_negatives N]
    python -m dpr_jax.prepare triples --passages CORPUS --questions JUDGED --out train.jsonl.gz
        (no triples: each judged question's positives, no hard negatives)

TRIPLES: MS MARCO's `qidpidtriples` TSV (`qid<TAB>pos pid<TAB>neg pid`) or JSON-lines
`{"query_id"|"qid", "positive_ids"|"pos", "negative_ids"|"neg"}` (see dpr_jax.data.triples).
CORPUS: anything `read_corpus` reads. QUERIES: a BEIR folder (its `queries.jsonl`: every query)
or anything `read_questions` reads whose questions have ids (`queries.train.tsv`, ...). JUDGED:
questions with positives (a BEIR `qrels/train.tsv`, MS MARCO's `qrels.train.tsv`, SQuAD qas).

Writes one DPR training record a (query, positives) group, `{id, question, answers,
positive_ctxs, negative_ctxs: [], hard_negative_ctxs}`, each passage `{title, text,
passage_id}`: the file `train.py --config.data.train_files=OUT` reads. Rows of one query and
positive are joined, their negatives in file order without repeats (at most --max_negatives);
a negative that is its row's positive is left out and counted. A passage with a title and no
text is written with its title as its text (DPR records need a text), counted. A query or
passage id not in QUERIES or CORPUS is an error naming the line. JSON-lines, gzip'd for a `.gz`
name, written whole under a temporary name and renamed.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from dpr_jax.data import beir, triples
from dpr_jax.data.corpus import Corpus, Question, read_corpus, read_questions
from dpr_jax.data.textio import DataError, atomic_write


def queries_by_id(path) -> dict[str, Question]:
  """The questions of `path` by id (a BEIR folder: every query of its `queries.jsonl`)."""
  p = Path(path)
  questions = read_questions((beir.find(p, beir.QUERIES) if beir.is_folder(p) else None) or p)
  out = {}
  for n, q in enumerate(questions, 1):
    if q.id is None or not str(q.id).strip():
      raise DataError(f"{path}: question {n}: expected an id (triples name queries by id), "
                      "found none")
    if str(q.id) in out:
      raise DataError(f"{path}: question {n}: expected unique question ids, found {q.id!r} "
                      "again")
    out[str(q.id)] = dataclasses.replace(q, id=str(q.id))
  return out


def checked(rows, queries, known, path, queries_from, corpus_from):
  """`rows`, each checked: its query in `queries`, its passages in `known`."""
  for r in rows:
    where = f"{path}: line {r.line}"
    if r.qid not in queries:
      raise DataError(f"{where}: expected a query id of {queries_from}, found {r.qid!r}")
    for kind, ids in (("positive", r.positives), ("negative", r.negatives)):
      for pid in ids:
        if pid not in known:
          raise DataError(f"{where}: expected passage ids of {corpus_from}, found {pid!r} "
                          f"({kind})")
    yield r


def write_records(out, corpus: Corpus, items) -> dict:
  """Writes a DPR record for each (question, positive ids, negative ids) of `items`; -> counts."""
  row = {pid: i for i, pid in enumerate(corpus.ids)}
  title_only: set[str] = set()

  def ctx(pid):
    title, text = corpus.titles[row[pid]], corpus.texts[row[pid]]
    if not text.strip():
      title_only.add(pid)
      title, text = "", title
    return {"title": title, "text": text, "passage_id": pid}

  counts = {"records": 0, "hard_negatives": 0, "records_without_hard_negatives": 0}
  with atomic_write(out) as f:
    for q, pos, neg in items:
      rec = {"id": q.id, "question": q.question, "answers": q.answers,
             "positive_ctxs": [ctx(p) for p in pos], "negative_ctxs": [],
             "hard_negative_ctxs": [ctx(p) for p in neg]}
      f.write(json.dumps(rec, ensure_ascii=False) + "\n")
      counts["records"] += 1
      counts["hard_negatives"] += len(neg)
      counts["records_without_hard_negatives"] += not neg
  return {"out": str(out), **counts, "title_only_passages": len(title_only)}


def from_triples(out, corpus: Corpus, triples_path, questions_path,
                 max_negatives: int | None = None) -> dict:
  queries = queries_by_id(questions_path)
  rows = checked(triples.read_rows(triples_path), queries, set(corpus.ids), triples_path,
                 questions_path, corpus.path)
  groups, dropped = triples.group(rows, max_negatives)
  stats = write_records(out, corpus, ((queries[g.qid], g.positives, g.negatives)
                                      for g in groups))
  return {**stats, "queries": len({g.qid for g in groups}), "max_negatives": max_negatives,
          "negatives_that_are_positives": dropped, "triples_from": str(triples_path),
          "questions_from": str(questions_path), "corpus_from": corpus.path}


def from_judgements(out, corpus: Corpus, questions_path) -> dict:
  known, items, unjudged = set(corpus.ids), [], 0
  for n, q in enumerate(read_questions(questions_path), 1):
    if not q.positive_pids:
      unjudged += 1
      continue
    for pid in q.positive_pids:
      if pid not in known:
        raise DataError(f"{questions_path}: question {n}: expected passage ids of "
                        f"{corpus.path}, found {pid!r} (question {q.id!r})")
    items.append((q, q.positive_pids, []))
  if not items:
    raise DataError(f"{questions_path}: expected questions with positive passages "
                    "(positive_pids or qrels), found none")
  return {**write_records(out, corpus, items), "questions_without_positives": unjudged,
          "questions_from": str(questions_path), "corpus_from": corpus.path}


def main(argv=None) -> int:
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.prepare triples", __doc__)
  ap.add_argument("--out", required=True, type=Path, help="the DPR training file to write")
  ap.add_argument("--passages", required=True, help="the corpus (any format read_corpus reads)")
  ap.add_argument("--questions", required=True,
                  help="the queries by id (with --triples), else questions with positives")
  ap.add_argument("--triples", help="qidpidtriples TSV or JSON-lines of ids")
  ap.add_argument("--max_negatives", type=cli.positive_int, default=None,
                  help="with --triples: hard negatives kept a record (default all)")
  a = ap.parse_args(argv)
  if a.max_negatives and not a.triples:
    ap.error("--max_negatives goes with --triples")
  corpus = read_corpus(a.passages)
  stats = (from_triples(a.out, corpus, a.triples, a.questions, a.max_negatives) if a.triples
           else from_judgements(a.out, corpus, a.questions))
  print(json.dumps(stats, indent=1))
  return 0


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.run(main))
