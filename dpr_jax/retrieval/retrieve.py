"""Retrieve passages for questions: dense (FAISS), BM25, or DPR's hybrid.

  python -m dpr_jax.retrieve --model PATH --embeddings DIR --passages FILE \\
      --questions FILE --out results.json --k 100 [--index flat|hnsw|ivfpq|mesh] \\
      [--retriever dense|bm25|hybrid] [--hybrid_lambda 1.1]

Output: DPR's results JSON, `[{question, answers, ctxs: [{id, title, text, score, has_answer}]}]`
(plus `id` and `positive_pids` when the question file has them, for recall/MRR). The dense index
is built once from the embedding parts, saved in `<embeddings>/index-<kind>/` with its id map and
the model fingerprint, and reused; an index of another model or corpus is an error.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

import numpy as np

from dpr_jax import cli
from dpr_jax.data import answers as answer_lib
from dpr_jax.data.textio import write_json
from dpr_jax.retrieval.searcher import QuestionEncoder, fuse


@functools.lru_cache(maxsize=2)
def question_encoder(model_path, which, pooling, normalize, max_length, batch_size):
  """Loaded once per process (the interactive reader asks many times)."""
  return QuestionEncoder(model_path, which=which, pooling=pooling, normalize=normalize,
                         max_length=max_length, max_batch=batch_size)


def encode_questions(model_path, texts, *, which="best", pooling="cls", normalize=None,
                     max_length=64, batch_size=64) -> tuple[np.ndarray, dict]:
  """-> ([Q, D] question embeddings, {fingerprint, ...}) from any model PATH."""
  enc = question_encoder(str(model_path), which, pooling, normalize, max_length, batch_size)
  return enc(texts), {**enc.desc, "fingerprint": enc.fingerprint}


@functools.lru_cache(maxsize=2)
def dense_index(emb_dir, kind: str, index_dir=None, mesh_recall: float = 1.0):
  """Loads `<emb_dir>/index-<kind>` (checking its identity) or builds and saves it; `mesh`:
  the parts sharded over all devices (`mesh_recall` < 1: `lax.approx_max_k` at that recall)."""
  from dpr_jax.retrieval import index as index_lib
  from dpr_jax.retrieval.encoding import EmbeddingParts
  if kind == "mesh":  # exact search with the embeddings sharded over all devices
    from dpr_jax.retrieval import mesh_index
    return mesh_index.load(emb_dir, approx=mesh_recall < 1.0, recall_target=mesh_recall)
  parts = EmbeddingParts(emb_dir)
  d = Path(index_dir or Path(emb_dir) / f"index-{kind}")
  if (d / "index.json").is_file():
    return index_lib.load(d, parts.identity)
  idx = index_lib.build(parts, kind, parts.dim, parts.identity)
  idx.save(d)
  return idx


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


@functools.lru_cache(maxsize=2)
def _corpus(path):
  from dpr_jax.data.corpus import read_corpus
  return read_corpus(path)


@functools.lru_cache(maxsize=2)
def _bm25(path, k1, b):
  from dpr_jax.retrieval.bm25 import BM25
  corpus = _corpus(path)
  return BM25(corpus.titles, corpus.texts, k1=k1, b=b)


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


def _dense(s: Settings, corpus, texts, row_of, depth):
  if not s.model or not s.embeddings:
    raise ValueError(f"--retriever {s.retriever}: expected --model and --embeddings, "
                     f"found model={s.model!r}, embeddings={s.embeddings!r}")
  idx = dense_index(s.embeddings, s.index, mesh_recall=s.mesh_recall)
  if idx.identity.get("corpus") != str(Path(s.passages).resolve()) or len(idx.ids) != len(corpus):
    raise ValueError(f"{s.embeddings}: expected embeddings of {s.passages} ({len(corpus)} "
                     f"passages), found {idx.identity.get('corpus')} ({len(idx.ids)})")
  q, desc = encode_questions(s.model, texts, which=s.which, pooling=s.pooling,
                             normalize=s.normalize, max_length=s.question_max_length)
  if desc["fingerprint"] != idx.identity["fingerprint"]:
    raise ValueError(f"{s.embeddings}: expected embeddings of --model {s.model} (fingerprint "
                     f"{desc['fingerprint']}), found fingerprint {idx.identity['fingerprint']}")
  scores, r = idx.search(q, depth)
  missing = {idx.ids[i] for i in r.ravel() if i >= 0} - row_of.keys()
  if missing:
    raise ValueError(f"{s.embeddings}: expected ids of {s.passages}, found {sorted(missing)[:3]}")
  return q, (scores, np.vectorize(lambda i: row_of[idx.ids[i]] if i >= 0 else -1)(r))


def retrieve(questions: list, s: Settings) -> list[dict]:
  """Retrieval results (DPR's JSON records) for `questions` (`corpus.Question`s). Corpus, BM25
  index, dense index and model stay loaded between calls with the same settings."""
  if s.k < 1:
    raise ValueError(f"--k: expected an integer >= 1, found {s.k}")
  corpus = _corpus(s.passages)
  texts = [q.question for q in questions]
  row_of = {pid: i for i, pid in enumerate(corpus.ids)}
  depth = max(s.k, s.hybrid_depth) if s.retriever == "hybrid" else s.k
  dense = bm25 = None
  if s.retriever in ("dense", "hybrid"):
    q, dense = _dense(s, corpus, texts, row_of, depth)
  if s.retriever in ("bm25", "hybrid"):
    engine = _bm25(s.passages, s.bm25_k1, s.bm25_b)
    r, sc = engine.search(texts, depth)
    bm25 = (sc, r)
  if s.retriever == "hybrid":
    from dpr_jax.retrieval.encoding import read_embeddings
    ids, emb, _ = read_embeddings(s.embeddings)
    emb_rows = np.array([row_of[i] for i in ids])
    by_row = np.empty_like(emb)
    by_row[emb_rows] = emb
    bm25_full = engine.all_scores(texts)
    scores, rows = fuse(dense, bm25, s.hybrid_lambda, s.k,
                        lambda qi, rr: by_row[rr] @ q[qi], lambda qi, rr: bm25_full(qi)[rr])
  else:
    scores, rows = dense if dense is not None else bm25
  return results_json(questions, corpus, rows[:, :s.k], scores[:, :s.k], s.match,
                      with_text=s.with_text)


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


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.retrieve", __doc__)
  add_retrieval_args(ap)
  cli.add_questions_args(ap)
  ap.add_argument("--k", type=cli.positive_int, default=100, help="passages per question")
  ap.add_argument("--out", required=True, help="results JSON")
  ap.add_argument("--no_text", action="store_true",
                  help="leave passage titles and texts out of the results (smaller files)")
  ap.add_argument("--paragraphs", help="--passages holds windows (`python -m dpr_jax.prepare "
                  "windows`) of this corpus: results list its paragraphs, each at the rank of "
                  "its best window (4k windows are retrieved for k paragraphs)")
  a = ap.parse_args(argv)
  if a.paragraphs:
    from dpr_jax.data import windows
    from dpr_jax.data.corpus import read_corpus
    found = retrieve(read_questions(a), dataclasses.replace(
        settings(a, 4 * a.k, with_text=False), match=None))
    results = windows.to_paragraphs(found, read_corpus(a.paragraphs), a.k, a.match,
                                    with_text=not a.no_text)
  else:
    results = retrieve(read_questions(a), settings(a, a.k, with_text=not a.no_text))
  write_json(a.out, results)
  from dpr_jax.retrieval.evaluate import evaluate, format_table
  if not any(r["answers"] for r in results):
    print(f"{len(results)} questions retrieved to {a.out}; {a.questions} has no answers, so no "
          "accuracy can be computed")
    return
  ks = sorted({k for k in (1, 5, 20, 100) if k <= a.k} | {a.k})
  print(format_table(evaluate(results, ks, match=a.match)))


if __name__ == "__main__":
  sys.exit(cli.retrieve())
