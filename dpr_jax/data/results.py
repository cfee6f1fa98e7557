"""DPR's retrieval results JSON, `[{question, answers, ctxs: [{id, ...}]}]`: the shape check
shared by the tools that read it (evaluate, mine, the reader)."""
from __future__ import annotations

from dpr_jax.data.textio import DataError


def check_results(results, path) -> list[dict]:
  """`results` (read from `path`) as DPR results JSON: a non-empty list of {question, answers:
  list, ctxs: [{id, ...}]}; a `DataError` naming the file and record otherwise."""
  if not isinstance(results, list):
    raise DataError(f"{path}: expected a JSON list of retrieval results, found a "
                    f"{type(results).__name__}")
  if not results:
    raise DataError(f"{path}: expected retrieval results, found an empty list")
  for n, r in enumerate(results):
    if not isinstance(r, dict) or not isinstance(r.get("ctxs"), list):
      raise DataError(f"{path}: record {n}: expected an object with a list 'ctxs' (retrieval "
                      f"results), found {type(r).__name__ if not isinstance(r, dict) else sorted(r)}")
    if not isinstance(r.get("question"), str) or not isinstance(r.get("answers"), list):
      raise DataError(f"{path}: record {n}: expected a string 'question' and a list 'answers', "
                      f"found {type(r.get('question')).__name__} and "
                      f"{type(r.get('answers')).__name__}")
    for c in r["ctxs"]:
      if not isinstance(c, dict) or "id" not in c:
        raise DataError(f"{path}: record {n}: expected passages with an 'id', found {c!r:.60}")
  return results
