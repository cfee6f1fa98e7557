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


def extend_to_words(s: int, e: int, subword: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
  """DPR's `_extend_span_to_full_words` (dpr/data/reader_data.py): the inclusive token span
  (s, e) grown to whole words, the start moved left while it is on a continuation piece
  (`subword[i]`: a `##` piece) and the end moved right while the next piece is one, within the
  text tokens lo..hi-1."""
  while s > lo and subword[s]:
    s -= 1
  while e < hi - 1 and subword[e + 1]:
    e += 1
  return s, e


def best_spans(start: np.ndarray, end: np.ndarray, text_mask: np.ndarray,
               max_answer_length: int = 10, subword: np.ndarray | None = None,
               top_spans: int = 1) -> list[tuple[int, int, float]]:
  """DPR's `get_best_spans` (dpr/data/reader_data.py) for one passage. start, end, text_mask,
  subword: [L] -> up to `top_spans` (s, e, score), best first. Candidates are the text-token
  spans s <= e < s + max_answer_length by descending start[s] + end[e] (ties: in (s, e)
  order); a candidate that contains, or lies inside, a span already chosen is skipped; a chosen
  span is extended to whole words (`extend_to_words`, when `subword` is given) *after* it is
  chosen, so later candidates are compared with the extended span, and its score stays the
  candidate's. The best span is therefore the highest-scoring candidate, extended. No text
  tokens: []."""
  ok = np.asarray(text_mask) > 0
  if not ok.any():
    return []
  text = np.flatnonzero(ok)
  lo, hi = int(text[0]), int(text[-1]) + 1
  l = len(start)
  i = np.arange(l)
  valid = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer_length)
  valid &= ok[:, None] & ok[None, :]
  score = np.where(valid, np.asarray(start)[:, None] + np.asarray(end)[None, :], -np.inf).ravel()
  order = (np.argsort(-score, kind="stable")[: int(valid.sum())] if top_spans > 1
           else [int(np.argmax(score))])
  chosen: list[tuple[int, int]] = []
  out = []
  for flat in order:
    s, e = divmod(int(flat), l)
    if any(s <= ps <= pe <= e or ps <= s <= e <= pe for ps, pe in chosen):
      continue
    if subword is not None:
      s, e = extend_to_words(s, e, subword, lo, hi)
    out.append((s, e, float(score[flat])))
    chosen.append((s, e))
    if len(out) == top_spans:
      break
  return out


def best_span(start: np.ndarray, end: np.ndarray, text_mask: np.ndarray,
              max_answer_length: int = 10, subword: np.ndarray | None = None
              ) -> tuple[int, int, float]:
  """The best of `best_spans`: (s, e, score) maximising start[s] + end[e] over text tokens with
  s <= e < s + max_answer_length, extended to whole words when `subword` is given."""
  spans = best_spans(start, end, text_mask, max_answer_length, subword)
  if not spans:
    raise ValueError("no text tokens to read a span from")
  return spans[0]
