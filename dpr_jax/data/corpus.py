"""Passage corpora and question files, in each format the tools read, told apart by name and
content (ids stay strings throughout).

Corpus (`read_corpus`): DPR's `psgs_w100.tsv` layout, a header row then `id<TAB>text<TAB>title`;
a BEIR folder or its `corpus.jsonl` (`dpr_jax.data.beir`); MS MARCO's `collection.tsv`
(`pid<TAB>text`, no header), or a folder holding it (`dpr_jax.data.msmarco`). Questions
(`read_questions`): DPR's `.qa.csv` (`question<TAB>python-list-of-answers`), JSON-lines
`{question, answer(s)}`, the SQuAD qas JSON-lines (which add `id` and gold `positive_pids`),
BEIR queries `{_id, text}`; a BEIR folder or its `qrels/SPLIT.tsv` (the judged queries, with
their grades); MS MARCO's `queries.*.tsv`, or its `qrels.*.tsv` (the queries beside it that it
judges). `.gz` is accepted everywhere.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import json
import sys
from pathlib import Path

from dpr_jax.data import beir, msmarco
from dpr_jax.data.records import Corpus, Question  # noqa: F401 (re-exported)
from dpr_jax.data.textio import DataError, open_text


def _first_line(path) -> str:
  with open_text(path) as f:
    return next(iter(f), "")


def read_corpus(path, limit: int | None = None) -> Corpus:
  """The corpus at `path`: a DPR passage TSV, a BEIR folder or `corpus.jsonl`, an MS MARCO
  `collection.tsv` or a folder holding it (see the module doc)."""
  p = Path(path)
  if p.is_dir():
    if beir.is_folder(p):
      return dataclasses.replace(beir.read_corpus(beir.find(p, beir.CORPUS), limit), path=str(p))
    if beir.find(p, msmarco.COLLECTION):
      coll = beir.find(p, msmarco.COLLECTION)
      return dataclasses.replace(msmarco.read_collection(coll, limit), path=str(p))
    raise FileNotFoundError(f"{p}: expected a corpus file, a BEIR folder ({beir.CORPUS}) or an "
                            f"MS MARCO folder ({msmarco.COLLECTION}), found a directory holding "
                            "neither")
  name = p.name.removesuffix(".gz")
  if name.endswith(".jsonl"):
    return beir.read_corpus(p, limit)
  first = _first_line(p).rstrip("\r\n").split("\t")
  if name == msmarco.COLLECTION or (len(first) == 2 and first[0].strip() != "id"):
    return msmarco.read_collection(p, limit)
  return read_dpr_corpus(p, limit)


def read_dpr_corpus(path, limit: int | None = None) -> Corpus:
  """Reads a DPR passage TSV. Empty texts and duplicate ids are errors naming the line."""
  csv.field_size_limit(sys.maxsize)
  ids, texts, titles, seen = [], [], [], set()
  with open_text(path) as f:
    rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:3]] != ["id", "text", "title"]:
      found = "an empty file" if header is None else repr("\t".join(header))
      raise DataError(f"{path}: line 1: expected the header 'id<TAB>text<TAB>title', found {found}")
    for n, row in enumerate(rows, 2):
      if len(row) != 3:
        raise DataError(f"{path}: line {n}: expected 3 tab-separated fields (id, text, title), "
                        f"found {len(row)}")
      pid, text, title = row
      if not text.strip():
        raise DataError(f"{path}: line {n}: expected a passage text, found an empty one "
                        f"(passage {pid!r})")
      if pid in seen:
        raise DataError(f"{path}: line {n}: expected unique passage ids, found {pid!r} again")
      seen.add(pid)
      ids.append(pid), texts.append(text), titles.append(title)
      if limit and len(ids) >= limit:
        break
  if not ids:
    raise DataError(f"{path}: line 2: expected passages after the header, found none "
                    "(empty corpus)")
  return Corpus(ids, texts, titles, str(path))


def _csv_question(line: str, where: str) -> Question:
  parts = line.rstrip("\r\n").split("\t")
  if len(parts) != 2:
    raise DataError(f"{where}: expected 'question<TAB>[answers]', found {len(parts)} "
                    "tab-separated fields")
  try:
    answers = ast.literal_eval(parts[1])
  except (ValueError, SyntaxError) as e:
    raise DataError(f"{where}: expected a Python list of answers, found {parts[1][:60]!r}") from e
  if not isinstance(answers, list):
    raise DataError(f"{where}: expected a list of answers, found {type(answers).__name__}")
  return Question(parts[0], [str(a) for a in answers])


def _json_question(line: str, where: str) -> Question:
  try:
    rec = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(f"{where}: expected a JSON object, found malformed JSON ({e.msg})") from e
  if isinstance(rec, dict) and "question" not in rec and "_id" in rec and "text" in rec:
    return beir.query(rec, where)   # a BEIR queries.jsonl line
  q = rec.get("question") if isinstance(rec, dict) else None
  if not isinstance(q, str) or not q.strip():
    raise DataError(f"{where}: expected a non-empty string field 'question', found "
                    f"{type(q).__name__ if q is not None else 'none'}")
  answers = rec.get("answers", rec.get("answer", []))
  if isinstance(answers, str):
    answers = [answers]
  if not isinstance(answers, list):
    raise DataError(f"{where}: expected 'answers' to be a list, found {type(answers).__name__}")
  pids = rec.get("positive_pids")
  if pids is not None and not isinstance(pids, list):
    raise DataError(f"{where}: expected 'positive_pids' to be a list, found {type(pids).__name__}")
  return Question(q, [str(a) for a in answers], rec.get("id"),
                  None if pids is None else [str(p) for p in pids], rec.get("title"))


def read_questions(path, limit: int | None = None) -> list[Question]:
  """The questions at `path`, in any format of the module doc. Questions without answers are
  kept (retrieval needs none); an empty file is an error."""
  p = Path(path)
  if beir.is_folder(p) or (p.parent.name == beir.QRELS_DIR and beir.is_folder(p.parent.parent)):
    return beir.read_questions(p, limit=limit)
  if p.is_dir():
    raise FileNotFoundError(f"{p}: expected a question file or a BEIR folder ({beir.CORPUS}, "
                            f"{beir.QUERIES}, {beir.QRELS_DIR}/), found a directory holding "
                            "neither")
  if msmarco.is_qrels_file(p) or msmarco.is_queries_file(p):
    return msmarco.read_questions(p, limit)
  if p.name.removesuffix(".gz").endswith(".tsv"):
    first = _first_line(p).rstrip("\r\n").split("\t")
    if len(first) == 2 and not first[1].lstrip().startswith("["):
      return msmarco.read_questions(p, limit)
  return read_dpr_questions(p, limit)


def read_dpr_questions(path, limit: int | None = None) -> list[Question]:
  """DPR `.qa.csv`, or JSON-lines with `question` and `answers` (or `answer`), or BEIR
  `queries.jsonl` lines."""
  out = []
  csv_like = str(path).endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz"))
  with open_text(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      out.append((_csv_question if csv_like else _json_question)(line, f"{path}: line {n}"))
      if limit and len(out) >= limit:
        break
  if not out:
    raise DataError(f"{path}: expected questions, found an empty file")
  return out
