"""A retriever loaded once and asked many times: dense, BM25 or DPR's hybrid over one corpus.
It is the one retrieval pipeline: `python -m dpr_jax.retrieve`, `python -m dpr_jax.answer` and
`python -m dpr_jax.serve` all search through it.

  s = Searcher("paragraphs.tsv.gz", model="minilm", embeddings="emb/", pooling="mean")
  s.search(["who wrote hamlet?"], k=10)  # -> [[Hit(pid, score, title, text), ...]]

Dense retrieval searches the FAISS index of an `encode.py` directory (built and saved in
`<embeddings>/index-<kind>/` on first use); BM25 uses DPR's parameters; hybrid is DPR's
rescoring of the union of both candidate lists (`dense.fuse`), with the passage embeddings held
once, in corpus order. The embeddings are checked once, when the searcher is built: made from
this corpus (path, size and every id) by this model (its fingerprint). Calls are serialised by a
lock, so one instance can serve many threads.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

RETRIEVERS = ("dense", "bm25", "hybrid")


class Hit(NamedTuple):
  pid: str
  score: float
  title: str
  text: str


@functools.lru_cache(maxsize=2)
def load_corpus(path: str):
  """The corpus of `path`, read once per process (several searchers over it share it)."""
  from dpr_jax.data.corpus import read_corpus
  return read_corpus(path)


@functools.lru_cache(maxsize=2)
def load_bm25(path: str, k1: float, b: float):
  """The BM25 index of the corpus at `path`, built once per process for the same parameters."""
  from dpr_jax.retrieval.bm25 import BM25
  corpus = load_corpus(path)
  return BM25(corpus.titles, corpus.texts, k1=k1, b=b)


class Searcher:
  """passages: the corpus TSV; model + embeddings for dense / hybrid (`encode.py` output made
  with that model from that corpus: both are checked)."""

  def __init__(self, passages, *, model=None, embeddings=None, retriever: str = "dense",
               index: str = "flat", mesh_recall: float = 1.0, which: str = "best",
               pooling: str = "cls", normalize=None, question_max_length: int = 64,
               hybrid_lambda: float = 1.1, hybrid_depth: int = 1000, bm25_k1: float = 0.9,
               bm25_b: float = 0.4):
    if retriever not in RETRIEVERS:
      raise ValueError(f"--retriever: expected one of {', '.join(RETRIEVERS)}, "
                       f"found {retriever!r}")
    if retriever != "bm25" and not (model and embeddings):
      raise ValueError(f"--retriever {retriever}: expected --model and --embeddings, "
                       f"found model={model!r}, embeddings={embeddings!r}")
    self.retriever, self.hybrid_lambda, self.hybrid_depth = retriever, hybrid_lambda, hybrid_depth
    self.passages = str(passages)
    self.corpus = load_corpus(self.passages)
    self.lock = threading.Lock()
    self.encoder = self.index = self.bm25 = self.by_row = None
    if retriever in ("dense", "hybrid"):
      from dpr_jax.retrieval.dense import dense_index
      self.index = dense_index(str(embeddings), index, mesh_recall=mesh_recall)
      self.index_rows = self._check_embeddings(str(embeddings))
      self._load_encoder(model, embeddings, dict(which=which, pooling=pooling,
                                                 normalize=normalize,
                                                 max_length=question_max_length))
    if retriever in ("bm25", "hybrid"):
      self.bm25 = load_bm25(self.passages, bm25_k1, bm25_b)
    if retriever == "hybrid":
      self.by_row = self._embeddings_by_row(embeddings)

  def _check_embeddings(self, embeddings: str) -> np.ndarray:
    """The one check of the embeddings against the corpus -> corpus row of each index row
    (and -1 for FAISS's "no result", index -1)."""
    found, n = self.index.identity.get("corpus"), len(self.index.ids)
    if found != str(Path(self.passages).resolve()) or n != len(self.corpus):
      raise ValueError(f"{embeddings}: expected embeddings of {self.passages} "
                       f"({len(self.corpus)} passages), found {found} ({n})")
    row_of = self.row_of
    missing = [p for p in self.index.ids if p not in row_of]
    if missing:
      raise ValueError(f"{embeddings}: expected ids of {self.passages}, found "
                       f"{', '.join(map(repr, missing[:3]))}")
    return np.array([row_of[p] for p in self.index.ids] + [-1])

  def _load_encoder(self, model, embeddings, kwargs):
    from dpr_jax.retrieval.dense import question_encoder
    self.encoder = question_encoder(str(model), kwargs["which"], kwargs["pooling"],
                                    kwargs["normalize"], kwargs["max_length"])
    want = self.index.identity["fingerprint"]
    if self.encoder.fingerprint != want:
      raise ValueError(f"{embeddings}: expected embeddings of --model {model} (fingerprint "
                       f"{self.encoder.fingerprint}), found fingerprint {want}")

  def _embeddings_by_row(self, embeddings) -> np.ndarray:
    """[N, D] float32 passage embeddings in corpus order, filled part by part (one copy)."""
    from dpr_jax.retrieval.encoding import EmbeddingParts
    parts = EmbeddingParts(embeddings)
    by_row = np.empty((len(self.corpus), parts.dim), np.float32)
    row_of = self.row_of
    for ids, e in parts:
      by_row[[row_of[i] for i in ids]] = e
    return by_row

  @functools.cached_property
  def row_of(self) -> dict:
    return {pid: i for i, pid in enumerate(self.corpus.ids)}

  def __len__(self):
    return len(self.corpus)

  def search(self, questions: list[str], k: int) -> list[list[Hit]]:
    """The top k passages of each question, best first (fewer when the corpus is smaller)."""
    if not questions:
      return []
    scores, rows = self.rows(list(questions), k)
    c = self.corpus
    return [[Hit(c.ids[r], float(s), c.titles[r], c.texts[r]) for r, s in zip(rr, ss) if r >= 0]
            for rr, ss in zip(rows, scores)]

  def rows(self, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (scores [Q, k'], corpus rows [Q, k']), best first; k' = min(k, corpus size), and a
    row of -1 where an approximate index found fewer."""
    if k < 1:
      raise ValueError(f"--k: expected an integer >= 1, found {k}")
    with self.lock:
      return self._rows(texts, k)

  def _rows(self, texts: list[str], k: int):
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
    from dpr_jax.retrieval.dense import fuse
    bm25_full = self.bm25.all_scores(texts)
    return fuse(dense, bm25, self.hybrid_lambda, k, lambda qi, rr: self.by_row[rr] @ q[qi],
                lambda qi, rr: bm25_full(qi)[rr])
