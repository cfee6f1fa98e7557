"""BM25 over a passage corpus (bm25s), with DPR's parameters (k1 = 0.9, b = 0.4) by default.

Passages are indexed as `title + " " + text`, lowercased word tokens (no stemming, no stopword
list): the reference setting of the shared SQuAD data's README.
"""
from __future__ import annotations

import numpy as np


def _tokens(texts):
  import bm25s
  return bm25s.tokenize(list(texts), lower=True, stopwords=None, return_ids=False,
                        show_progress=False)


class BM25:
  def __init__(self, titles, texts, k1: float = 0.9, b: float = 0.4):
    import bm25s
    self.retriever = bm25s.BM25(k1=k1, b=b)
    self.retriever.index(_tokens(f"{t} {x}" for t, x in zip(titles, texts)), show_progress=False)
    self.size = len(texts)

  def search(self, queries, k: int, n_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (row indices [Q, k] into the corpus, scores [Q, k]), best first."""
    k = min(k, self.size)
    q = [t if t else ["[empty]"] for t in _tokens(queries)]
    idx, scores = self.retriever.retrieve(q, k=k, show_progress=False, n_threads=n_threads)
    return np.asarray(idx), np.asarray(scores, np.float32)

  def all_scores(self, queries):
    """-> f(i): BM25 scores of query i against every passage, [N] (computed on demand)."""
    toks = _tokens(queries)
    return lambda i: np.asarray(self.retriever.get_scores(toks[i]), np.float32)
