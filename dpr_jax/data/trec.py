"""TREC-style relevance files: qrels (read and write) and run files (read and write).

Qrels, two layouts, told apart by the first line:

- TREC: `qid 0 docid relevance`, whitespace separated, no header (the second column, the
  iteration, is ignored);
- BEIR: `query-id<TAB>corpus-id<TAB>score` after that header line.

Relevance is an integer (graded judgments are kept as they are). A run file has one line per
retrieved passage, `qid Q0 docid rank score tag`, whitespace separated. Ids stay strings.
Bad input raises `DataError` naming the file and line: a row with a missing column, a relevance,
rank or score that is no number, a (query, passage) pair given twice, an empty file.
"""
from __future__ import annotations

from dpr_jax.data.textio import DataError, atomic_write, open_text

BEIR_HEADER = ("query-id", "corpus-id", "score")


def _int(text: str, path, n: int, what: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise DataError(f"{path}: line {n}: expected {what} (an integer), found {text!r}") from None


def _float(text: str, path, n: int, what: str) -> float:
  try:
    return float(text)
  except ValueError:
    raise DataError(f"{path}: line {n}: expected {what} (a number), found {text!r}") from None


def _rows(path):
  """(line number, stripped line) of the non-blank lines of `path`."""
  with open_text(path) as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        yield n, line.rstrip("\r\n")


def read_qrels(path, first_line: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
  """{query id: {passage id: relevance}} from a TREC or BEIR qrels file (see the module);
  `first_line`, when given, receives each query's first line number (for later messages)."""
  qrels: dict[str, dict[str, int]] = {}
  beir = None
  for n, line in _rows(path):
    if beir is None:
      beir = tuple(line.split("\t")) == BEIR_HEADER
      if beir:
        continue
    if beir:
      fields = line.split("\t")
      if len(fields) != 3 or not all(f.strip() for f in fields):
        raise DataError(f"{path}: line {n}: expected 3 tab-separated fields (query-id, "
                        f"corpus-id, score), found {len(fields)}: {line!r:.80}")
      qid, pid, rel = (f.strip() for f in fields)
    else:
      fields = line.split()
      if len(fields) != 4:
        raise DataError(f"{path}: line {n}: expected 4 fields (qid 0 docid relevance) or the "
                        f"BEIR header 'query-id<TAB>corpus-id<TAB>score', found "
                        f"{len(fields)}: {line!r:.80}")
      qid, _, pid, rel = fields
    judged = qrels.setdefault(qid, {})
    if first_line is not None:
      first_line.setdefault(qid, n)
    if pid in judged:
      raise DataError(f"{path}: line {n}: expected one judgment per query and passage, found "
                      f"query {qid!r} passage {pid!r} again")
    judged[pid] = _int(rel, path, n, "a relevance")
  if not qrels:
    raise DataError(f"{path}: expected relevance judgments (qrels), found none")
  return qrels


def write_qrels(path, qrels: dict[str, dict[str, int]], beir: bool = False):
  """`qrels` as a TREC (or, `beir`, a BEIR) qrels file, written whole or not at all."""
  with atomic_write(path) as f:
    if beir:
      f.write("\t".join(BEIR_HEADER) + "\n")
    for qid, judged in qrels.items():
      for pid, rel in judged.items():
        f.write(f"{qid}\t{pid}\t{rel}\n" if beir else f"{qid} 0 {pid} {rel}\n")


def qrels_from_results(results: list[dict]) -> dict[str, dict[str, int]]:
  """Relevance 1 for each record's gold passages (`positive_pids`), keyed by `run_qid`."""
  return {run_qid(r, n): {str(p): 1 for p in r["positive_pids"]}
          for n, r in enumerate(results) if r.get("positive_pids")}


def run_qid(record: dict, n: int) -> str:
  """The run's query id of results record `n`: its `id`, else its position `n` in the file."""
  return str(record["id"]) if record.get("id") is not None else str(n)


def write_run(path, results: list[dict], tag: str):
  """DPR results records as a TREC run, `qid Q0 docid rank score tag` (rank from 1, in the
  records' order), written whole or not at all."""
  if not tag or any(c.isspace() for c in tag):
    raise DataError(f"--run_tag: expected a word without spaces, found {tag!r}")
  with atomic_write(path) as f:
    for n, r in enumerate(results):
      qid = run_qid(r, n)
      for rank, c in enumerate(r["ctxs"], 1):
        f.write(f"{qid} Q0 {c['id']} {rank} {float(c.get('score', 0.0)):.6f} {tag}\n")


def read_run(path) -> dict[str, list[str]]:
  """{query id: passage ids, best first} from a TREC run file. Passages are ordered by score,
  highest first, ties by the file's rank column, then by line (trec_eval breaks ties by
  passage id instead)."""
  rows: dict[str, list[tuple[float, int, int, str]]] = {}
  for n, line in _rows(path):
    fields = line.split()
    if len(fields) != 6:
      raise DataError(f"{path}: line {n}: expected 6 fields (qid Q0 docid rank score tag), "
                      f"found {len(fields)}: {line!r:.80}")
    qid, _, pid, rank, score, _ = fields
    rows.setdefault(qid, []).append((-_float(score, path, n, "a score"),
                                     _int(rank, path, n, "a rank"), n, pid))
  if not rows:
    raise DataError(f"{path}: expected a TREC run (qid Q0 docid rank score tag), found an "
                    "empty file")
  run = {}
  for qid, ranked in rows.items():
    seen: dict[str, int] = {}
    for _, _, n, pid in ranked:
      if pid in seen:
        raise DataError(f"{path}: line {n}: expected each passage once per query, found "
                        f"query {qid!r} passage {pid!r} again (line {seen[pid]})")
      seen[pid] = n
    run[qid] = [pid for *_, pid in sorted(ranked)]
  return run


def is_trec_run(path) -> bool:
  """Whether `path` is a TREC run rather than a JSON document: its first non-blank line has the
  six fields `qid Q0 docid rank score tag`, with an integer rank and a numeric score. Anything
  else is read as JSON, whose reader names what it found."""
  for _, line in _rows(path):
    fields = line.split()
    if len(fields) != 6:
      return False
    try:
      int(fields[3]), float(fields[4])
    except ValueError:
      return False
    return True
  return False
