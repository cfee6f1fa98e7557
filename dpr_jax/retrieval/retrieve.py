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

import argparse
import functools
import json
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from dpr_jax.data import answers as answer_lib
from dpr_jax import config_lib


@functools.lru_cache(maxsize=2)
def _question_encoder(model_path, which, pooling, normalize):
  """Loaded once per process (the interactive reader asks many times)."""
  from dpr_jax.training import sharding, steps
  from dpr_jax.training.checkpoint import fingerprint, load_model
  model, tok_path, desc = load_model(model_path, which=which, pooling=pooling, normalize=normalize)
  graphdef, state = nnx.split(model)
  mesh = sharding.make_mesh(devices=jax.local_devices())
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  desc = {**desc, "fingerprint": fingerprint(params, model.question.pooling,
                                             model.question.normalize)}
  return steps.make_encode(graphdef, "question"), params, mesh, tok_path, desc


def encode_questions(model_path, texts, *, which="best", pooling="cls", normalize=None,
                     max_length=64, batch_size=64) -> tuple[np.ndarray, dict]:
  """-> ([Q, D] question embeddings, {fingerprint, ...}) from any model PATH."""
  from dpr_jax.training.inference import embed
  from dpr_jax.models.tokenization import Tokenizer
  encode, params, mesh, tok_path, desc = _question_encoder(str(model_path), which, pooling,
                                                           normalize)
  tok = Tokenizer(tok_path, question_max_length=max_length).questions(texts)
  q = embed(encode, params, tok["input_ids"], tok["attention_mask"], batch_size, mesh, local=True)
  return q, desc


@functools.lru_cache(maxsize=2)
def dense_index(emb_dir, kind: str, index_dir=None):
  """Loads `<emb_dir>/index-<kind>` (checking its identity) or builds and saves it."""
  from dpr_jax.retrieval import index as index_lib
  from dpr_jax.retrieval.encoding import EmbeddingParts
  if kind == "mesh":  # exact search with the embeddings sharded over all devices
    from dpr_jax.retrieval import mesh_index
    try:
      return mesh_index.load(emb_dir)
    except mesh_index.CorpusTooLarge as e:
      raise SystemExit(str(e)) from e
  parts = EmbeddingParts(emb_dir)
  d = Path(index_dir or Path(emb_dir) / f"index-{kind}")
  if (d / "index.json").is_file():
    return index_lib.load(d, parts.identity)
  idx = index_lib.build(parts, kind, parts.dim, parts.identity)
  idx.save(d)
  return idx


def fuse(dense: tuple, bm25: tuple, lam: float, k: int, dense_exact, bm25_exact):
  """DPR's hybrid: the union of both candidate lists, rescored as BM25 + lam * dense with each
  score computed exactly for every candidate. dense/bm25: (scores [Q, k'], rows [Q, k']);
  *_exact(qi, rows) -> scores of those corpus rows for question qi."""
  out_s, out_r = [], []
  for qi in range(len(dense[1])):
    rows = np.unique(np.concatenate([dense[1][qi], bm25[1][qi]]))
    rows = rows[rows >= 0]
    s = bm25_exact(qi, rows) + lam * dense_exact(qi, rows)
    top = np.argsort(-s, kind="stable")[:k]
    out_s.append(s[top]), out_r.append(rows[top])
  return np.stack(out_s), np.stack(out_r)


def results_json(questions, corpus, rows, scores, match="string", with_text=True) -> list[dict]:
  out, words = [], {}

  def hit(answers, r):
    if match != "string":
      return answer_lib.has_answer(answers, corpus.texts[r], match)
    if r not in words:  # tokenise each passage once, not once per question
      words[r] = answer_lib.tokens(corpus.texts[r])
    return answer_lib.has_answer_tokens(answers, words[r])

  for q, rr, ss in zip(questions, rows, scores):
    ctxs = [{"id": corpus.ids[r], **({"title": corpus.titles[r], "text": corpus.texts[r]}
                                     if with_text else {}),
             "score": float(s), "has_answer": hit(q.answers, r)}
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


def run(a, questions=None) -> list[dict]:
  """Retrieval for the questions of `a.questions` (or `questions`, a list of
  `corpus.Question`). Corpus, BM25 index, dense index and model stay loaded between calls."""
  from dpr_jax.data.corpus import read_questions
  corpus = _corpus(a.passages)
  if questions is None:
    questions = read_questions(a.questions, limit=a.limit)
    if getattr(a, "sample", None) and a.sample < len(questions):
      keep = np.sort(np.random.default_rng(0).choice(len(questions), a.sample, replace=False))
      questions = [questions[i] for i in keep]
  texts = [q.question for q in questions]
  row_of = {pid: i for i, pid in enumerate(corpus.ids)}
  depth = max(a.k, a.hybrid_depth) if a.retriever == "hybrid" else a.k
  dense = bm25 = None
  if a.retriever in ("dense", "hybrid"):
    if not a.model or not a.embeddings:
      raise SystemExit("--retriever dense/hybrid needs --model and --embeddings")
    idx = dense_index(a.embeddings, a.index)
    if idx.identity.get("corpus") != str(Path(a.passages).resolve()) or len(idx.ids) != len(corpus):
      raise SystemExit(f"{a.embeddings} was encoded from {idx.identity.get('corpus')} "
                       f"({len(idx.ids)} passages), not {a.passages} ({len(corpus)})")
    q, desc = encode_questions(a.model, texts, **config_lib.model_kwargs(a),
                               max_length=a.question_max_length)
    if desc["fingerprint"] != idx.identity["fingerprint"]:
      raise SystemExit(f"--model {a.model} is not the model that encoded {a.embeddings} "
                       f"(fingerprint {desc['fingerprint']} vs {idx.identity['fingerprint']})")
    s, r = idx.search(q, depth)
    rows = np.vectorize(lambda i: row_of[idx.ids[i]] if i >= 0 else -1)(r)
    dense = (s, rows)
  if a.retriever in ("bm25", "hybrid"):
    engine = _bm25(a.passages, a.bm25_k1, a.bm25_b)
    r, s = engine.search(texts, depth)
    bm25 = (s, r)
  if a.retriever == "hybrid":
    from dpr_jax.retrieval.encoding import read_embeddings
    ids, emb, _ = read_embeddings(a.embeddings)
    emb_rows = np.array([row_of[i] for i in ids])
    by_row = np.empty_like(emb)
    by_row[emb_rows] = emb
    bm25_full = engine.all_scores(texts)
    scores, rows = fuse(dense, bm25, a.hybrid_lambda, a.k,
                        lambda qi, rr: by_row[rr] @ q[qi], lambda qi, rr: bm25_full(qi)[rr])
  else:
    scores, rows = dense if dense is not None else bm25
  return results_json(questions, corpus, rows[:, :a.k], scores[:, :a.k], a.match,
                      with_text=not getattr(a, "no_text", False))


def add_retrieval_args(ap, questions_required: bool = True):
  """The retrieval flags (shared with `dpr_jax.reader.answer`)."""
  config_lib.add_model_args(ap, required=False)
  ap.add_argument("--embeddings", help="encode.py output directory")
  ap.add_argument("--passages", required=True, help="the corpus TSV (id, text, title)")
  ap.add_argument("--questions", required=questions_required,
                  help=".qa.csv or JSON-lines questions")
  ap.add_argument("--k", type=int, default=100)
  ap.add_argument("--index", choices=["flat", "hnsw", "ivfpq", "mesh"], default="flat")
  ap.add_argument("--retriever", choices=["dense", "bm25", "hybrid"], default="dense")
  ap.add_argument("--hybrid_lambda", type=float, default=1.1, help="BM25 + lambda * dense")
  ap.add_argument("--hybrid_depth", type=int, default=1000, help="candidates from each retriever")
  ap.add_argument("--bm25_k1", type=float, default=0.9)
  ap.add_argument("--bm25_b", type=float, default=0.4)
  ap.add_argument("--question_max_length", type=int, default=64)
  ap.add_argument("--match", choices=["string", "regex"], default="string")
  ap.add_argument("--limit", type=int, default=None, help="first N questions only")
  ap.add_argument("--sample", type=int, default=None,
                  help="N questions drawn at random (seed 0), in file order")


def main(argv=None):
  ap = argparse.ArgumentParser(prog="python -m dpr_jax.retrieve", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  add_retrieval_args(ap)
  ap.add_argument("--out", required=True, help="results JSON")
  ap.add_argument("--no_text", action="store_true",
                  help="leave passage titles and texts out of the results (smaller files)")
  a = ap.parse_args(argv)
  results = run(a)
  Path(a.out).parent.mkdir(parents=True, exist_ok=True)
  with open(a.out, "w", encoding="utf-8") as f:
    json.dump(results, f, ensure_ascii=False, indent=1)
  from dpr_jax.retrieval.evaluate import evaluate, format_table
  print(format_table(evaluate(results, match=a.match)))


if __name__ == "__main__":
  from dpr_jax import cpu_malloc
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  sys.exit(main())
