"""DPR's extractive reader: the model, its loss, and span decoding (pure functions).

Input per (question, passage): `[CLS] question [SEP] title [SEP] text [SEP]`, zero type ids.
A span head gives start/end logits over the tokens, a selection head on [CLS] one logit per
passage. Training (DPR): per question, one positive passage (it contains an answer) at index 0
and M-1 negatives; loss = cross-entropy of the selection logits towards the positive + the
marginal negative log-likelihood of **all** answer occurrences (s_i, e_i) in the positive,
-log sum_i P_start(s_i) P_end(e_i), with start/end softmaxes over that passage's text tokens.
Names follow transformers' `DPRReader` (`qa_outputs`, `qa_classifier`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dpr_jax.models.bert import Bert, BertConfig, dense

NEG = -1e9


class Reader(nnx.Module):
  def __init__(self, cfg: BertConfig, *, dtype=jnp.float32, remat: bool = False,
               attention: str = "auto", rngs: nnx.Rngs):
    self.bert = Bert(cfg, dtype=dtype, remat=remat, attention=attention, rngs=rngs)
    self.qa_outputs = dense(cfg.hidden_size, 2, ("embed", "proj"), cfg, jnp.float32, rngs)
    self.qa_classifier = dense(cfg.hidden_size, 1, ("embed", "proj"), cfg, jnp.float32, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, *,
               dropout_rng: jax.Array | None = None):
    """input_ids, attention_mask: [N, M, L] (N questions x M passages) ->
    (start [N, M, L], end [N, M, L], select [N, M]) fp32 logits."""
    n, m, l = input_ids.shape
    h = self.bert(input_ids.reshape(n * m, l), attention_mask.reshape(n * m, l),
                  dropout_rng=dropout_rng).astype(jnp.float32)
    se = self.qa_outputs(h)                                              # [N*M, L, 2]
    select = self.qa_classifier(h[:, 0])[:, 0]                           # [N*M]
    return (se[..., 0].reshape(n, m, l), se[..., 1].reshape(n, m, l), select.reshape(n, m))


def reader_loss(start, end, select, text_mask, span_start, span_end, span_mask):
  """start, end: [N, M, L]; select: [N, M]; text_mask: [N, M, L] (1 on passage-text tokens);
  span_start, span_end, span_mask: [N, S] answer occurrences in passage 0 (the positive).
  -> {loss, select_loss, span_loss, select_accuracy}: means over the N questions."""
  sel = jax.nn.log_softmax(select, axis=-1)[:, 0]
  masked = lambda x: jnp.where(text_mask[:, 0] > 0, x[:, 0], NEG)
  ls = jax.nn.log_softmax(masked(start), axis=-1)                       # [N, L]
  le = jax.nn.log_softmax(masked(end), axis=-1)
  pair = (jnp.take_along_axis(ls, span_start, axis=1)
          + jnp.take_along_axis(le, span_end, axis=1))                  # [N, S]
  span_nll = -jax.nn.logsumexp(jnp.where(span_mask > 0, pair, NEG), axis=1)
  select_nll = -sel
  return {"loss": jnp.mean(select_nll + span_nll), "select_loss": jnp.mean(select_nll),
          "span_loss": jnp.mean(span_nll),
          "select_accuracy": jnp.mean((jnp.argmax(select, axis=-1) == 0).astype(jnp.float32))}


def best_span(start: np.ndarray, end: np.ndarray, text_mask: np.ndarray,
              max_answer_length: int = 10) -> tuple[int, int, float]:
  """start, end, text_mask: [L] for one passage -> (s, e, score) maximising start[s] + end[e]
  over text tokens with s <= e < s + max_answer_length."""
  ok = text_mask > 0
  s_log = np.where(ok, start, NEG)
  e_log = np.where(ok, end, NEG)
  l = len(start)
  i = np.arange(l)
  valid = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer_length)
  score = np.where(valid, s_log[:, None] + e_log[None, :], -np.inf)
  s, e = np.unravel_index(int(np.argmax(score)), score.shape)
  return int(s), int(e), float(score[s, e])
