"""Passage corpora in DPR's `psgs_w100.tsv` layout and question files.

Corpus: a header row, then `id<TAB>text<TAB>title` (`.gz` accepted). Question files: DPR's
`.qa.csv` (`question<TAB>python-list-of-answers`), JSON-lines `{question, answer(s)}`, and the
shared SQuAD qas JSON-lines (which add `id` and gold `positive_pids`).
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import json
import sys

from dpr_jax.data.examples import DataError, open_text


@dataclasses.dataclass
class Corpus:
  ids: list[str]
  texts: list[str]
  titles: list[str]
  path: str = ""

  def __len__(self):
    return len(self.ids)


def read_corpus(path, limit: int | None = None) -> Corpus:
  """Reads a DPR passage TSV. Empty texts and duplicate ids are errors naming the line."""
  csv.field_size_limit(sys.maxsize)
  ids, texts, titles, seen = [], [], [], set()
  with open_text(path) as f:
    rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:3]] != ["id", "text", "title"]:
      raise DataError(f"{path}: line 1: expected the header 'id<TAB>text<TAB>title', got {header}")
    for n, row in enumerate(rows, 2):
      if len(row) != 3:
        raise DataError(f"{path}: line {n}: expected 3 tab-separated fields, got {len(row)}")
      pid, text, title = row
      if not text.strip():
        raise DataError(f"{path}: line {n}: passage {pid!r} has an empty text")
      if pid in seen:
        raise DataError(f"{path}: line {n}: duplicate passage id {pid!r}")
      seen.add(pid)
      ids.append(pid), texts.append(text), titles.append(title)
      if limit and len(ids) >= limit:
        break
  return Corpus(ids, texts, titles, str(path))


@dataclasses.dataclass
class Question:
  question: str
  answers: list[str]
  id: str | None = None
  positive_pids: list[str] | None = None
  title: str | None = None


def read_questions(path, limit: int | None = None) -> list[Question]:
  """DPR `.qa.csv`, or JSON-lines with `question` and `answers` (or `answer`)."""
  out = []
  path_s = str(path)
  with open_text(path) as f:
    if path_s.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2:
          raise DataError(f"{path}: line {n}: expected 'question<TAB>[answers]'")
        try:
          answers = ast.literal_eval(parts[1])
        except (ValueError, SyntaxError) as e:
          raise DataError(f"{path}: line {n}: answers are not a Python list literal") from e
        if not isinstance(answers, list):
          raise DataError(f"{path}: line {n}: answers must be a list")
        out.append(Question(parts[0], [str(a) for a in answers]))
        if limit and len(out) >= limit:
          break
    else:
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          rec = json.loads(line)
        except json.JSONDecodeError as e:
          raise DataError(f"{path}: line {n}: malformed JSON ({e.msg})") from e
        q = rec.get("question") if isinstance(rec, dict) else None
        if not isinstance(q, str) or not q.strip():
          raise DataError(f"{path}: line {n}: missing string field 'question'")
        answers = rec.get("answers", rec.get("answer", []))
        if isinstance(answers, str):
          answers = [answers]
        pids = rec.get("positive_pids")
        out.append(Question(q, [str(a) for a in answers], rec.get("id"),
                            None if pids is None else [str(p) for p in pids], rec.get("title")))
        if limit and len(out) >= limit:
          break
  return out
