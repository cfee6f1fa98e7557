"""Retrieve passages for questions: dense (FAISS), BM25, or DPR's hybrid.

  python -m dpr_jax.retrieve --model PATH --embeddings DIR --passages FILE \\
      --questions FILE --out results.json --k 100 [--index flat|hnsw|ivfpq|mesh] \\
      [--retriever dense|bm25|hybrid] [--hybrid_lambda 1.1] [--format json|trec|both]

Output: DPR's results JSON, `[{question, answers, ctxs: [{id, title, text, score, has_answer}]}]`
(plus `id` and `positive_pids` when the question file has them, for recall/MRR); `--format trec`
writes a TREC run (`qid Q0 docid rank score tag`, qid: the question's `id`, else its position)
instead, `--format both` the two (the run at OUT.trec). The dense index
is built once from the embedding parts, saved in `<embeddings>/index-<kind>/` with its id map and
the model fingerprint, and reused; an index of another model or corpus is an error.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import sys

import numpy as np

from dpr_jax import cli
from dpr_jax.data import answers as answer_lib
from dpr_jax.data.textio import write_json
# The library's names, importable from here as well.
from dpr_jax.retrieval.dense import dense_index, encode_questions, fuse  # noqa: F401

log = logging.getLogger(__name__)


def results_json(questions, corpus, rows, scores, match="string", with_text=True) -> list[dict]:
  """DPR's results records; `match` None leaves `has_answer` out (windows mapped back to
  paragraphs are matched on the paragraph)."""
  out, hit = [], answer_lib.PassageMatcher(corpus.texts, match) if match else None
  for q, rr, ss in zip(questions, rows, scores):
    ctxs = [{"id": corpus.ids[r], **({"title": corpus.titles[r], "text": corpus.texts[r]}
                                     if with_text else {}),
             "score": float(s), **({"has_answer": hit(q.answers, r)} if hit else {})}
            for r, s in zip(rr, ss) if r >= 0]
    item = {"question": q.question, "answers": q.answers, "ctxs": ctxs}
    if q.id is not None:
      item["id"] = q.id
    if q.positive_pids is not None:
      item["positive_pids"] = q.positive_pids
    out.append(item)
  return out


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to retrieve (everything but the questions)."""
  passages: str
  retriever: str = "dense"           # dense | bm25 | hybrid
  model: str | None = None           # dense / hybrid: any model PATH of `load_model`
  embeddings: str | None = None      # dense / hybrid: encode.py output directory
  k: int = 100
  index: str = "flat"
  mesh_recall: float = 1.0           # index mesh: 1 exact, < 1 lax.approx_max_k's recall target
  which: str = "best"
  pooling: str = "cls"
  normalize: bool | None = None
  question_max_length: int = 64
  hybrid_lambda: float = 1.1
  hybrid_depth: int = 1000
  bm25_k1: float = 0.9
  bm25_b: float = 0.4
  match: str | None = "string"      # None: no has_answer in the results
  with_text: bool = True


@functools.lru_cache(maxsize=1)
def _searcher(s: Settings):
  from dpr_jax.retrieval.searcher import Searcher
  return Searcher(s.passages, model=s.model, embeddings=s.embeddings, retriever=s.retriever,
                  index=s.index, mesh_recall=s.mesh_recall, which=s.which, pooling=s.pooling,
                  normalize=s.normalize, question_max_length=s.question_max_length,
                  hybrid_lambda=s.hybrid_lambda, hybrid_depth=s.hybrid_depth,
                  bm25_k1=s.bm25_k1, bm25_b=s.bm25_b)


def searcher(s: Settings):
  """The `Searcher` of these settings, loaded once: the same corpus, index, embeddings and
  model serve every later call that differs only in k, match or with_text."""
  return _searcher(dataclasses.replace(s, k=1, match=None, with_text=True))


def retrieve(questions: list, s: Settings) -> list[dict]:
  """Retrieval results (DPR's JSON records) for `questions` (`corpus.Question`s), from the
  settings' `searcher` (loaded on the first call, reused by the next)."""
  if s.k < 1:
    raise ValueError(f"--k: expected an integer >= 1, found {s.k}")
  engine = searcher(s)
  scores, rows = engine.rows([q.question for q in questions], s.k)
  return results_json(questions, engine.corpus, rows, scores, s.match, with_text=s.with_text)


def add_retrieval_args(ap, passages_required: bool = True):
  """The retrieval flags (shared with `dpr_jax.reader.answer`)."""
  cli.add_model_args(ap, required=False)
  cli.add_index_args(ap)
  cli.add_passages_arg(ap, passages_required)
  g = ap.add_argument_group("retrieval")
  g.add_argument("--retriever", choices=["dense", "bm25", "hybrid"], default="dense")
  g.add_argument("--hybrid_lambda", type=float, default=1.1, help="BM25 + lambda * dense")
  g.add_argument("--hybrid_depth", type=cli.positive_int, default=1000,
                 help="candidates from each retriever")
  g.add_argument("--bm25_k1", type=float, default=0.9)
  g.add_argument("--bm25_b", type=float, default=0.4)
  g.add_argument("--question_max_length", type=cli.positive_int, default=64)
  g.add_argument("--match", choices=["string", "regex"], default="string")


def settings(a, k: int, with_text: bool = True) -> Settings:
  """`Settings` from the flags of `add_retrieval_args`."""
  return Settings(passages=a.passages, retriever=a.retriever, model=a.model,
                  embeddings=a.embeddings, k=k, index=a.index, mesh_recall=a.mesh_recall,
                  question_max_length=a.question_max_length, hybrid_lambda=a.hybrid_lambda,
                  hybrid_depth=a.hybrid_depth, bm25_k1=a.bm25_k1, bm25_b=a.bm25_b,
                  match=a.match, with_text=with_text, **cli.model_kwargs(a))


def read_questions(a) -> list:
  """The questions of `--questions`, `--limit` and `--sample` applied."""
  from dpr_jax.data.corpus import read_questions as read
  questions = read(a.questions, limit=a.limit)
  if a.sample and a.sample < len(questions):
    keep = np.sort(np.random.default_rng(0).choice(len(questions), a.sample, replace=False))
    questions = [questions[i] for i in keep]
  return questions


def paragraph_results(questions: list, s: Settings, paragraphs, k: int) -> list[dict]:
  """`s.passages` holds windows of the corpus `paragraphs`: each question's top `k` paragraphs,
  each at the rank of its best window. 4k windows are fetched first; a question whose windows
  fall on fewer than k paragraphs is fetched again, twice as deep, until it has k or every
  window was fetched. Questions left with fewer than k are counted in a warning."""
  from dpr_jax.data import windows
  size = len(searcher(s))
  out, todo, depth, deeper = [None] * len(questions), list(range(len(questions))), 4 * k, 0
  while todo:
    depth = min(depth, size)
    found = retrieve([questions[i] for i in todo],
                     dataclasses.replace(s, k=depth, match=None, with_text=False))
    mapped = windows.to_paragraphs(found, paragraphs, k, s.match, with_text=s.with_text)
    for i, r in zip(todo, mapped):
      out[i] = r
    todo = [i for i, r in zip(todo, mapped) if len(r["ctxs"]) < k] if depth < size else []
    deeper += len(todo)
    depth *= 2
  if deeper:
    log.info("%d fetches of windows deeper than %d for %d paragraphs", deeper, 4 * k, k)
  short = sum(len(r["ctxs"]) < k for r in out)
  if short:
    log.warning("%d of %d questions have fewer than %d paragraphs: all %d windows of %s fall "
                "on fewer paragraphs; their top-k is computed on a shorter list", short,
                len(out), k, size, s.passages)
  return out


def _recall_measurable(results: list[dict], passages) -> bool:
  """False (with a warning) for results over windows against gold paragraphs: window ids never
  equal the paragraph ids of `positive_pids`, so recall and MRR would read 0."""
  from dpr_jax.data.windows import is_window_id
  gold = [p for r in results for p in r.get("positive_pids") or ()]
  ids = [c["id"] for r in results for c in r["ctxs"]]
  if gold and ids and all(map(is_window_id, ids)) and not any(map(is_window_id, gold)):
    log.warning("%s holds windows (ids PARAGRAPH~FIRST_WORD) and the questions' positive_pids "
                "name paragraphs: recall@k and MRR@k are not computed; pass --paragraphs "
                "PARAGRAPHS to score by paragraph", passages)
    return False
  return True


def write_results(out, results: list[dict], fmt: str, tag: str):
  """`results` at `out` as DPR's JSON (`json`), a TREC run (`trec`), or both (the run at
  OUT.trec); each file written whole or not at all."""
  from pathlib import Path
  from dpr_jax.data.trec import write_run
  if fmt in ("json", "both"):
    write_json(out, results)
  if fmt in ("trec", "both"):
    write_run(Path(out).with_suffix(".trec") if fmt == "both" else out, results, tag)


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.retrieve", __doc__)
  add_retrieval_args(ap)
  cli.add_questions_args(ap)
  ap.add_argument("--k", type=cli.positive_int, default=100, help="passages per question")
  ap.add_argument("--out", required=True,
                  help="results JSON (--format trec: the TREC run file)")
  ap.add_argument("--format", choices=["json", "trec", "both"], default="json",
                  help="json: DPR's results JSON; trec: a TREC run file (qid Q0 docid rank "
                  "score tag); both: the JSON at --out and the run beside it, OUT.trec")
  ap.add_argument("--run_tag", default=None,
                  help="the TREC run's last column (default dpr-jax-RETRIEVER)")
  ap.add_argument("--no_text", action="store_true",
                  help="leave passage titles and texts out of the results (smaller files)")
  ap.add_argument("--paragraphs", help="--passages holds windows (`python -m dpr_jax.prepare "
                  "windows`) of this corpus: results list its paragraphs, each at the rank of "
                  "its best window (4k windows are retrieved for k paragraphs, more where they "
                  "fall on fewer than k)")
  a = ap.parse_args(argv)
  if a.run_tag is not None and (not a.run_tag or any(c.isspace() for c in a.run_tag)):
    raise cli.UsageError(f"--run_tag: expected a word without spaces, found {a.run_tag!r}")
  s = settings(a, a.k, with_text=not a.no_text)
  if a.paragraphs:
    from dpr_jax.data.corpus import read_corpus
    results = paragraph_results(read_questions(a), s, read_corpus(a.paragraphs), a.k)
  else:
    results = retrieve(read_questions(a), s)
  write_results(a.out, results, a.format, a.run_tag or f"dpr-jax-{a.retriever}")
  from dpr_jax.retrieval.evaluate import evaluate, format_table
  if not any(r["answers"] for r in results):
    print(f"{len(results)} questions retrieved to {a.out}; {a.questions} has no answers, so no "
          "accuracy can be computed")
    return
  if not a.paragraphs and not _recall_measurable(results, a.passages):
    results = [{k: v for k, v in r.items() if k != "positive_pids"} for r in results]
  depth = max(len(r["ctxs"]) for r in results)  # below k only where the corpus is too small
  ks = sorted({k for k in (1, 5, 20, 100) if k <= a.k} | {a.k})
  ks = [k for k in ks if k <= depth] or [max(depth, 1)]
  print(format_table(evaluate(results, ks, match=a.match)))


if __name__ == "__main__":
  sys.exit(cli.retrieve())
