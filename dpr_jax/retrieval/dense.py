"""The dense side of retrieval: a model's question encoder, the dense index of an `encode.py`
directory, and DPR's hybrid fusion of dense and BM25 candidates.

JAX and Flax are imported when a question encoder is built, not when this module is imported,
so that a command's `--help` stays light.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


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


class QuestionEncoder:
  """A model's question side, jitted once, with the fingerprint of what it computes."""

  def __init__(self, model, *, which="best", pooling="cls", normalize=None, max_length=64,
               max_batch: int = 16):
    import jax
    from flax import nnx
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


@functools.lru_cache(maxsize=2)
def question_encoder(model_path, which="best", pooling="cls", normalize=None, max_length=64,
                     batch_size=64) -> QuestionEncoder:
  """Loaded once per process for the same arguments."""
  return QuestionEncoder(model_path, which=which, pooling=pooling, normalize=normalize,
                         max_length=max_length, max_batch=batch_size)


def encode_questions(model_path, texts, *, which="best", pooling="cls", normalize=None,
                     max_length=64, batch_size=64) -> tuple[np.ndarray, dict]:
  """-> ([Q, D] question embeddings, {fingerprint, ...}) from any model PATH."""
  enc = question_encoder(str(model_path), which, pooling, normalize, max_length, batch_size)
  return enc(texts), {**enc.desc, "fingerprint": enc.fingerprint}
