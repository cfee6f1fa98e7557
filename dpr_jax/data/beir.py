"""BEIR-format datasets: a folder holding `corpus.jsonl`, `queries.jsonl` and `qrels/SPLIT.tsv`.

- `corpus.jsonl`: one JSON object a line, `{"_id", "title", "text"}` (`title` may be absent or
  empty; a passage needs a text or a title).
- `queries.jsonl`: one JSON object a line, `{"_id", "text"}`; an `answers` list (which
  `prepare beir` writes for SQuAD) is read too, other fields are ignored.
- `qrels/SPLIT.tsv`: the header `query-id<TAB>corpus-id<TAB>score`, then one judgement a row,
  an integer grade (0: judged not relevant).

Each file may be gzip'd (`corpus.jsonl.gz`). Ids are strings; a JSON number is read as its
decimal text. As BEIR's own loader, a split's questions are the queries its qrels judge, in the
order of `queries.jsonl`; their `positive_pids` are the passages graded above 0 and
`relevance` holds every grade.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dpr_jax.data import trec
from dpr_jax.data.records import Corpus, Question
from dpr_jax.data.textio import DataError, atomic_write, open_text

CORPUS, QUERIES, QRELS_DIR = "corpus.jsonl", "queries.jsonl", "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")
DEFAULT_SPLIT = "test"


def find(folder, name: str) -> Path | None:
  """`folder/name`, else `folder/name.gz`; None if neither is a file."""
  for cand in (Path(folder) / name, Path(folder) / f"{name}.gz"):
    if cand.is_file():
      return cand
  return None


def is_folder(path) -> bool:
  """A BEIR folder: a directory holding `corpus.jsonl` (or `.gz`)."""
  return Path(path).is_dir() and find(path, CORPUS) is not None


def _objects(path):
  """(line number, JSON object) of each non-blank line of `path`."""
  with open_text(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {n}: expected a JSON object, found malformed JSON "
                        f"({e.msg})") from e
      if not isinstance(rec, dict):
        raise DataError(f"{path}: line {n}: expected a JSON object, found "
                        f"{type(rec).__name__}")
      yield n, rec


def _id(rec: dict, where: str) -> str:
  v = rec.get("_id")
  if isinstance(v, int) and not isinstance(v, bool):
    v = str(v)
  if not isinstance(v, str) or not v.strip():
    raise DataError(f"{where}: expected a non-empty string field '_id', found "
                    f"{'none' if v is None else repr(v)[:40]}")
  return v


def _str(rec: dict, field: str, where: str) -> str:
  v = rec.get(field)
  if v is None:
    return ""
  if not isinstance(v, str):
    raise DataError(f"{where}: expected '{field}' to be a string, found {type(v).__name__}")
  return v


def read_corpus(path, limit: int | None = None) -> Corpus:
  """A BEIR `corpus.jsonl` as a `Corpus`; a bad line, a duplicate id or an empty file is a
  `DataError` naming the line."""
  ids, texts, titles, seen = [], [], [], set()
  for n, rec in _objects(path):
    where = f"{path}: line {n}"
    pid, title, text = _id(rec, where), _str(rec, "title", where), _str(rec, "text", where)
    if not text.strip() and not title.strip():
      raise DataError(f"{where}: expected a passage text or title, found neither "
                      f"(passage {pid!r})")
    if pid in seen:
      raise DataError(f"{where}: expected unique passage ids, found {pid!r} again")
    seen.add(pid)
    ids.append(pid), texts.append(text), titles.append(title)
    if limit and len(ids) >= limit:
      break
  if not ids:
    raise DataError(f"{path}: line 1: expected passages ({{\"_id\", \"title\", \"text\"}}), "
                    "found an empty file")
  return Corpus(ids, texts, titles, str(path))


def _answers(rec: dict, where: str) -> list[str]:
  v = rec.get("answers", [])
  if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
    raise DataError(f"{where}: expected 'answers' to be a list of strings, found "
                    f"{type(v).__name__}")
  return v


def query(rec: dict, where: str) -> Question:
  """A `queries.jsonl` record as a `Question` (no judgements)."""
  qid, text = _id(rec, where), _str(rec, "text", where)
  if not text.strip():
    raise DataError(f"{where}: expected a non-empty string field 'text', found none "
                    f"(query {qid!r})")
  return Question(text, _answers(rec, where), qid)


def read_queries(path) -> dict[str, Question]:
  """A BEIR `queries.jsonl`: query id -> its `Question`, in file order."""
  out = {}
  for n, rec in _objects(path):
    q = query(rec, f"{path}: line {n}")
    if q.id in out:
      raise DataError(f"{path}: line {n}: expected unique query ids, found {q.id!r} again")
    out[q.id] = q
  if not out:
    raise DataError(f"{path}: expected questions, found an empty file")
  return out


def qrels_path(folder, split: str | None = None) -> Path:
  """`folder/qrels/SPLIT.tsv`: `split`, else `test`, else the folder's one split."""
  qdir = Path(folder) / QRELS_DIR
  splits = sorted(p.name.split(".")[0] for p in qdir.glob("*.tsv*")) if qdir.is_dir() else []
  want = split or (DEFAULT_SPLIT if DEFAULT_SPLIT in splits or len(splits) != 1 else splits[0])
  found = find(qdir, f"{want}.tsv")
  if found is None:
    raise FileNotFoundError(f"{qdir / (want + '.tsv')}: expected the qrels of split {want!r}, "
                            f"found no such file (splits: {', '.join(splits) or 'none'})")
  return found


def read_questions(path, split: str | None = None, limit: int | None = None) -> list[Question]:
  """The questions of a BEIR folder's split (`path` the folder, or its `qrels/SPLIT.tsv`):
  the judged queries in `queries.jsonl` order, with their judgements."""
  path = Path(path)
  folder = path if path.is_dir() else path.parent.parent
  qrels_file = qrels_path(folder, split) if path.is_dir() else path
  queries_file = find(folder, QUERIES)
  if queries_file is None:
    raise FileNotFoundError(f"{folder / QUERIES}: expected the queries of {qrels_file}, "
                            "found no such file")
  queries = read_queries(queries_file)
  first: dict[str, int] = {}
  qrels = trec.read_qrels(qrels_file, first)
  for qid, n in first.items():
    if qid not in queries:
      raise DataError(f"{qrels_file}: line {n}: expected a query id of {queries_file}, "
                      f"found {qid!r}")
  out = [dataclasses.replace(q, positive_pids=[p for p, g in qrels[qid].items() if g > 0],
                             relevance=dict(qrels[qid]))
         for qid, q in queries.items() if qid in qrels]
  return out[:limit] if limit else out


def write_folder(out, passages, queries, qrels: dict[str, list]) -> dict:
  """Writes a BEIR folder: `passages` (id, title, text), `queries` (id, text, answers: written
  where not empty) and, for each
  split, `qrels[split]` rows (query id, passage id, grade). Every file is written whole under a
  temporary name and renamed when complete; the qrels come last."""
  out = Path(out)
  counts = {"passages": 0, "queries": 0}
  with atomic_write(out / CORPUS) as f:
    for pid, title, text in passages:
      f.write(json.dumps({"_id": pid, "title": title, "text": text}, ensure_ascii=False) + "\n")
      counts["passages"] += 1
  with atomic_write(out / QUERIES) as f:
    for qid, text, answers in queries:
      rec = {"_id": qid, "text": text, **({"answers": answers} if answers else {})}
      f.write(json.dumps(rec, ensure_ascii=False) + "\n")
      counts["queries"] += 1
  for split, rows in qrels.items():
    with atomic_write(out / QRELS_DIR / f"{split}.tsv") as f:
      f.write("\t".join(QRELS_HEADER) + "\n")
      f.writelines(f"{q}\t{p}\t{g}\n" for q, p, g in rows)
    counts[f"qrels/{split}.tsv"] = len(rows)
  return {"out": str(out), **counts}
