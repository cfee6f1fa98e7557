"""Training triples by id: a query, its positive passage(s) and hard negatives, named by the ids
of a queries file and a corpus (MS MARCO's, Tevatron's and sentence-transformers' layouts).

- TSV (MS MARCO's `qidpidtriples.train.full.2.tsv`): `qid<TAB>positive pid<TAB>negative pid`,
  one triple a row, no header.
- JSON-lines: one object a line, `{"query_id" | "qid", "positive_ids" | "pos": [...],
  "negative_ids" | "neg": [...]}`; the negatives may be absent, or an object of lists (as
  sentence-transformers' `msmarco-hard-negatives.jsonl`, negatives by system: taken in order).

Told apart by the first non-blank line (`{`: JSON-lines). Ids are strings (a JSON number is
read as its decimal text). `group` joins the rows (lines) of one query and the same positive(s)
into one group, their negatives in file order without repeats. Bad input is a `DataError`
naming the file and line; text triples (MS MARCO's `triples.train.small.tsv`) are not read.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable, Iterator, NamedTuple

from dpr_jax.data.textio import DataError, open_text

TSV_FIELDS = "query id, positive passage id, negative passage id"
QUERY_KEYS, POSITIVE_KEYS, NEGATIVE_KEYS = ("query_id", "qid"), ("positive_ids", "pos"), (
    "negative_ids", "neg")


class Row(NamedTuple):
  line: int
  qid: str
  positives: tuple[str, ...]
  negatives: tuple[str, ...]


@dataclasses.dataclass
class Group:
  qid: str
  positives: tuple[str, ...]
  negatives: list[str]


def _tsv_row(line: str, n: int, where: str) -> Row:
  fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
  if len(fields) != 3 or not all(fields):
    raise DataError(f"{where}: expected 3 tab-separated fields ({TSV_FIELDS}), found "
                    f"{len(fields)}" + (" with an empty one" if len(fields) == 3 else ""))
  return Row(n, fields[0], (fields[1],), (fields[2],))


def _id(v, what: str, where: str) -> str:
  if isinstance(v, int) and not isinstance(v, bool):
    return str(v)
  if not isinstance(v, str) or not v.strip():
    raise DataError(f"{where}: expected {what} (a string or an integer), found "
                    f"{'none' if v is None else repr(v)[:40]}")
  return v


def _field(rec: dict, keys: tuple[str, ...]):
  return next(((repr(k), rec[k]) for k in keys if k in rec), (" or ".join(map(repr, keys)), None))


def _id_list(rec: dict, keys: tuple[str, ...], where: str, required: bool) -> tuple[str, ...]:
  key, v = _field(rec, keys)
  if v is None and not required:
    return ()
  if isinstance(v, dict) and not required:        # negatives by system: {"bm25": [...], ...}
    v = [x for lists in v.values() for x in (lists if isinstance(lists, list) else [lists])]
  if not isinstance(v, list) or (required and not v):
    raise DataError(f"{where}: expected a {'non-empty ' if required else ''}list of passage ids "
                    f"{key}, found {'none' if v is None else type(v).__name__ if v else '[]'}")
  return tuple(dict.fromkeys(_id(x, f"passage ids in {key}", where) for x in v))


def _json_row(line: str, n: int, where: str) -> Row:
  try:
    rec = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(f"{where}: expected a JSON object, found malformed JSON ({e.msg})") from e
  if not isinstance(rec, dict):
    raise DataError(f"{where}: expected a JSON object, found {type(rec).__name__}")
  key, qid = _field(rec, QUERY_KEYS)
  return Row(n, _id(qid, f"a query id {key}", where),
             _id_list(rec, POSITIVE_KEYS, where, required=True),
             _id_list(rec, NEGATIVE_KEYS, where, required=False))


def read_rows(path) -> Iterator[Row]:
  """The rows of a triples file (TSV or JSON-lines, see the module doc), streamed."""
  parse = None
  with open_text(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      if parse is None:
        parse = _json_row if line.lstrip().startswith("{") else _tsv_row
      yield parse(line, n, f"{path}: line {n}")
  if parse is None:
    raise DataError(f"{path}: line 1: expected triples ({TSV_FIELDS}; or JSON-lines of ids), "
                    "found an empty file")


def group(rows: Iterable[Row], max_negatives: int | None = None) -> tuple[list[Group], int]:
  """-> (one group a (query, positives), in the order of their first row; the negatives left
  out for being a positive of their own row). A group keeps its first `max_negatives` distinct
  negatives (all when None)."""
  groups: dict[tuple, Group] = {}
  seen: dict[tuple, set] = {}
  dropped = 0
  for r in rows:
    key = (r.qid, r.positives)
    if key not in groups:
      groups[key], seen[key] = Group(r.qid, r.positives, []), set()
    g, s = groups[key], seen[key]
    for pid in r.negatives:
      if pid in r.positives:
        dropped += 1
      elif pid not in s and (max_negatives is None or len(g.negatives) < max_negatives):
        s.add(pid)
        g.negatives.append(pid)
  return list(groups.values()), dropped
