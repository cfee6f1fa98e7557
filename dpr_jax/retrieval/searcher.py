"""A retriever (and optionally a reader) loaded once and asked many times: the library behind
`python -m dpr_jax.serve`.

  s = Searcher("paragraphs.tsv.gz", model="minilm", embeddings="emb/", pooling="mean")
  s.search(["who wrote hamlet?"], k=10)  # -> [[Hit(pid, score, title, text), ...]]
  Answerer("runs/reader").answer(["who wrote hamlet?"], s.search(["who wrote hamlet?"], 10))

Dense retrieval searches the FAISS index of an `encode.py` directory (built and saved in
`<embeddings>/index-<kind>/` on first use); BM25 uses DPR's parameters; hybrid is DPR's
rescoring of the union of both candidate lists (`fuse`). Calls are serialised by a lock, so one
instance can serve many threads.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

RETRIEVERS = ("dense", "bm25", "hybrid")


class Hit(NamedTuple):
  pid: str
  score: float
  title: str
  text: str


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


def load_index(emb_dir, kind: str = "flat", mesh_recall: float = 1.0):
  """The dense index of `emb_dir` (see `retrieve.dense_index`)."""
  from dpr_jax.retrieval.retrieve import dense_index
  return dense_index(emb_dir, kind, mesh_recall=mesh_recall)


class QuestionEncoder:
  """A model's question side, jitted once, with the fingerprint of what it computes."""

  def __init__(self, model, *, which="best", pooling="cls", normalize=None, max_length=64,
               max_batch: int = 16):
    from dpr_jax.models.tokenization import Tokenizer
    from dpr_jax.training import sharding, steps
    from dpr_jax.training.checkpoint import fingerprint
    from dpr_jax.training.loading import load_model
    m, tok_path, self.desc = load_model(model, which=which, pooling=pooling, normalize=normalize)
    graphdef, state = nnx.split(m)
    self.mesh = sharding.make_mesh(devices=jax.local_devices())
    self.params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(self.mesh))
    self.fingerprint = fingerprint(self.params, m.question.pooling, m.question.normalize)
    self.encode = steps.make_encode(graphdef, "question")
    self.tok = Tokenizer(tok_path, question_max_length=max_length)
    self.max_batch = max_batch

  def __call__(self, texts: list[str]) -> np.ndarray:
    from dpr_jax.training.inference import embed
    t = self.tok.questions(texts)
    # Batches of 1, 2, 4, ... max_batch rows: one question is not padded to a full batch, and
    # only a few shapes are ever compiled.
    batch = min(self.max_batch, 1 << (len(texts) - 1).bit_length())
    return embed(self.encode, self.params, t["input_ids"], t["attention_mask"], batch,
                 self.mesh, local=True)


class Searcher:
  """passages: the corpus TSV; model + embeddings for dense / hybrid (`encode.py` output made
  with that model from that corpus: both are checked)."""

  def __init__(self, passages, *, model=None, embeddings=None, retriever: str = "dense",
               index: str = "flat", mesh_recall: float = 1.0, which: str = "best", pooling: str = "cls", normalize=None,
               question_max_length: int = 64, hybrid_lambda: float = 1.1,
               hybrid_depth: int = 1000, bm25_k1: float = 0.9, bm25_b: float = 0.4):
    from dpr_jax.data.corpus import read_corpus
    if retriever not in RETRIEVERS:
      raise ValueError(f"retriever must be one of {RETRIEVERS}, got {retriever!r}")
    if retriever != "bm25" and not (model and embeddings):
      raise ValueError(f"the {retriever} retriever needs a model and its embeddings")
    self.retriever, self.hybrid_lambda, self.hybrid_depth = retriever, hybrid_lambda, hybrid_depth
    self.corpus = read_corpus(passages)
    self.row_of = {pid: i for i, pid in enumerate(self.corpus.ids)}
    self.lock = threading.Lock()
    self.encoder = self.index = self.bm25 = None
    if retriever in ("dense", "hybrid"):
      self.index = load_index(embeddings, index, mesh_recall)
      self._load_dense(passages, model, embeddings, dict(
          which=which, pooling=pooling, normalize=normalize, max_length=question_max_length))
    if retriever in ("bm25", "hybrid"):
      from dpr_jax.retrieval.bm25 import BM25
      self.bm25 = BM25(self.corpus.titles, self.corpus.texts, k1=bm25_k1, b=bm25_b)
    if retriever == "hybrid":
      from dpr_jax.retrieval.encoding import read_embeddings
      ids, emb, _ = read_embeddings(embeddings)
      self.by_row = np.empty_like(emb)
      self.by_row[[self.row_of[i] for i in ids]] = emb

  def _load_dense(self, passages, model, embeddings, encoder_kwargs):
    corpus = self.index.identity.get("corpus")
    if corpus != str(Path(passages).resolve()) or len(self.index.ids) != len(self.corpus):
      raise ValueError(f"{embeddings} was encoded from {corpus} ({len(self.index.ids)} "
                       f"passages), not {passages} ({len(self.corpus)})")
    missing = [p for p in self.index.ids if p not in self.row_of]
    if missing:
      raise ValueError(f"{embeddings}: passage id {missing[0]!r} is not in {passages}")
    self.index_rows = np.array([self.row_of[p] for p in self.index.ids] + [-1])  # [-1] -> -1
    self.encoder = QuestionEncoder(model, **encoder_kwargs)
    if self.encoder.fingerprint != self.index.identity["fingerprint"]:
      raise ValueError(f"{model} is not the model that encoded {embeddings} (fingerprint "
                       f"{self.encoder.fingerprint} vs {self.index.identity['fingerprint']})")

  def __len__(self):
    return len(self.corpus)

  def search(self, questions: list[str], k: int) -> list[list[Hit]]:
    """The top k passages of each question, best first (fewer when the corpus is smaller)."""
    if not questions:
      return []
    with self.lock:
      scores, rows = self._search(list(questions), k)
    c = self.corpus
    return [[Hit(c.ids[r], float(s), c.titles[r], c.texts[r]) for r, s in zip(rr, ss) if r >= 0]
            for rr, ss in zip(rows, scores)]

  def _search(self, texts: list[str], k: int):
    depth = max(k, self.hybrid_depth) if self.retriever == "hybrid" else k
    dense = bm25 = None
    if self.index is not None:
      q = self.encoder(texts)
      s, i = self.index.search(q, depth)
      dense = (s, self.index_rows[i])
    if self.bm25 is not None:
      r, s = self.bm25.search(texts, depth)
      bm25 = (s, r)
    if self.retriever != "hybrid":
      s, r = dense if dense is not None else bm25
      return s[:, :k], r[:, :k]
    bm25_full = self.bm25.all_scores(texts)
    return fuse(dense, bm25, self.hybrid_lambda, k, lambda qi, rr: self.by_row[rr] @ q[qi],
                lambda qi, rr: bm25_full(qi)[rr])


class Answerer:
  """A reader training workdir, loaded and compiled once: reads retrieved passages and
  returns the best answer span of each question."""

  def __init__(self, reader_dir, which: str = "best", max_answer_length: int = 10,
               batch_questions: int = 1):
    from dpr_jax.reader.train import load_reader, make_forward
    from dpr_jax.training import sharding
    model, self.tok, self.step = load_reader(reader_dir, which)
    graphdef, state = nnx.split(model)
    self.mesh = sharding.make_mesh(devices=jax.local_devices())
    self.params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(self.mesh))
    self.forward = make_forward(graphdef)
    self.max_answer_length, self.batch_questions = max_answer_length, batch_questions
    self.lock = threading.Lock()

  def answer(self, questions: list[str], hits: list[list[Hit]]) -> list[dict]:
    """-> per question {text, passage_id, passage_rank, title, score, start, end}: the answer,
    the passage it was read from, and its character span [start, end) in that passage."""
    from dpr_jax.reader.train import predict
    if not questions:
      return []
    results = [{"question": q, "answers": [],
                "ctxs": [{"id": h.pid, "title": h.title, "text": h.text} for h in hh]}
               for q, hh in zip(questions, hits)]
    with self.lock:
      preds = predict(self.forward, self.params, results, self.tok,
                      top_k=max(len(hh) for hh in hits), batch_questions=self.batch_questions,
                      max_answer_length=self.max_answer_length, mesh=self.mesh)
    out = []
    for p in preds:
      # The prediction is a substring of its passage; its first occurrence marks it.
      start = p["passage"].find(p["prediction"]) if p["prediction"] else -1
      out.append({"text": p["prediction"], "passage_id": p["passage_id"],
                  "passage_rank": p["passage_rank"], "title": p["title"],
                  "score": float(p["score"]), "start": start if start >= 0 else None,
                  "end": start + len(p["prediction"]) if start >= 0 else None})
    return out
