"""MS MARCO's passage-ranking TSVs: `collection.tsv`, `queries.SPLIT.tsv` and `qrels.SPLIT.tsv`.

- `collection.tsv`: `pid<TAB>text`, no header (passages have no title).
- `queries.SPLIT.tsv` (`queries.dev.small.tsv`, ...): `qid<TAB>text`, no header.
- `qrels.SPLIT.tsv`: TREC's qrels layout, `qid 0 pid grade` separated by spaces or tabs.

Each may be gzip'd. Ids stay strings. A qrels file given as the questions reads the queries file
of its split beside it (`qrels.dev.small.tsv` -> `queries.dev.small.tsv`): the judged queries in
that file's order, `positive_pids` the passages graded above 0.
"""
from __future__ import annotations

import re
from pathlib import Path

from dpr_jax.data import trec
from dpr_jax.data.records import Corpus, Question
from dpr_jax.data.textio import DataError, open_text

COLLECTION = "collection.tsv"


def _name(path) -> str:
  return Path(path).name.removesuffix(".gz")


def is_queries_file(path) -> bool:
  return bool(re.fullmatch(r"queries(\..+)?\.tsv", _name(path)))


def is_qrels_file(path) -> bool:
  return bool(re.fullmatch(r"qrels(\..+)?\.tsv", _name(path)))


def _pairs(path, what: str):
  """(line number, id, text) of each non-blank `id<TAB>text` line; a duplicate id is an error."""
  seen = set()
  with open_text(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      row = line.rstrip("\r\n").split("\t")
      if len(row) != 2 or not row[0].strip():
        raise DataError(f"{path}: line {n}: expected 2 tab-separated fields (id, text), "
                        f"found {len(row)}" + ("" if len(row) != 2 else " with an empty id"))
      key, text = row[0].strip(), row[1]
      if not text.strip():
        raise DataError(f"{path}: line {n}: expected a {what} text, found an empty one "
                        f"({what} {key!r})")
      if key in seen:
        raise DataError(f"{path}: line {n}: expected unique {what} ids, found {key!r} again")
      seen.add(key)
      yield n, key, text


def read_collection(path, limit: int | None = None) -> Corpus:
  """MS MARCO's `collection.tsv` as a `Corpus` (empty titles)."""
  ids, texts = [], []
  for _, pid, text in _pairs(path, "passage"):
    ids.append(pid), texts.append(text)
    if limit and len(ids) >= limit:
      break
  if not ids:
    raise DataError(f"{path}: line 1: expected passages (pid<TAB>text), found an empty file")
  return Corpus(ids, texts, [""] * len(ids), str(path))


def read_queries(path) -> dict[str, str]:
  out = {qid: text for _, qid, text in _pairs(path, "query")}
  if not out:
    raise DataError(f"{path}: expected questions, found an empty file")
  return out


def queries_beside(qrels_file) -> Path:
  """The queries file of a qrels file's split: `qrels.X.tsv[.gz]` -> `queries.X.tsv[.gz]`."""
  stem = _name(qrels_file).removeprefix("qrels")
  for name in (f"queries{stem}", f"queries{stem}.gz"):
    if (Path(qrels_file).parent / name).is_file():
      return Path(qrels_file).parent / name
  raise FileNotFoundError(f"{Path(qrels_file).parent / ('queries' + stem)}: expected the "
                          f"queries of {qrels_file}, found no such file")


def read_questions(path, limit: int | None = None) -> list[Question]:
  """A queries file (every query, no judgements) or a qrels file (the judged queries of the
  queries file beside it, with their judgements)."""
  if not is_qrels_file(path):
    out = [Question(text, [], qid) for qid, text in read_queries(path).items()]
    return out[:limit] if limit else out
  queries_file = queries_beside(path)
  queries = read_queries(queries_file)
  first: dict[str, int] = {}
  qrels = trec.read_qrels(path, first)
  for qid, n in first.items():
    if qid not in queries:
      raise DataError(f"{path}: line {n}: expected a query id of {queries_file}, found {qid!r}")
  out = [Question(text, [], qid, [p for p, g in qrels[qid].items() if g > 0], None,
                  dict(qrels[qid])) for qid, text in queries.items() if qid in qrels]
  return out[:limit] if limit else out
