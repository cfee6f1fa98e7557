"""Reading retrieved passages and choosing an answer.

Every (question, passage) pair is read once, independently: the selection logit of a passage
does not depend on the others (DPR's softmax over passages is a training loss), so pairs are
sorted by length and read in length-bucketed batches. Each reading keeps the passage's best span
(start + end logits over text tokens, at most `max_answer_length` tokens), extended to whole
words after it is chosen as DPR does, with that span's score, its character offsets in the
passage text and the passage's selection logit. An answer is then chosen among the first k
readings of a question, by one of three scorings:

- `select` (DPR): the passage with the highest selection logit, then its best span;
- `joint`: the span with the highest span score + selection logit across all k passages;
- `fused`: `joint` + `fusion_weight` x the retriever's score, standardised over the k passages
  (mean 0, variance 1), so BM25, dense and hybrid scores share one scale.

Reading once and choosing for every k and scoring lets one run fill a retriever x k table.
"""
from __future__ import annotations

import dataclasses
import functools
import unicodedata

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

from dpr_jax.data import answers, buckets
from dpr_jax.models.reader import NEG, best_spans
from dpr_jax.reader import data as reader_data
from dpr_jax.training import harness, sharding

SCORINGS = ("select", "joint", "fused")


@dataclasses.dataclass
class Reading:
  """One passage read: its best span `answer` == text[start_char:end_char]."""
  answer: str
  span_score: float
  select: float
  title: str
  text: str
  start_char: int | None = None
  end_char: int | None = None


@functools.lru_cache(maxsize=4)
def subword_ids(hf) -> np.ndarray:
  """[vocab] bool: True for the ids of continuation pieces (`##...`), DPR's
  `BertTensorizer.is_sub_word_id` (computed once per tokenizer)."""
  vocab = hf.get_vocab()
  out = np.zeros(max(len(hf), max(vocab.values()) + 1), bool)
  for piece, i in vocab.items():
    out[i] = piece.startswith(("##", " ##"))
  return out


def char_span(enc: reader_data.Encoded, s: int, e: int) -> tuple[int, int]:
  """Token span (positions in enc.ids) -> [start, end) in the passage text. The end takes in
  the combining marks that follow the last piece's characters (an uncased tokenizer strips
  accents, and its offsets then stop before a decomposed accent)."""
  a, b = enc.offsets[s - enc.text_start][0], enc.offsets[e - enc.text_start][1]
  while b < len(enc.text) and unicodedata.combining(enc.text[b]):
    b += 1
  return a, b


def read_one(enc: reader_data.Encoded, start, end, text_mask, select: float,
             subword: np.ndarray, max_answer_length: int) -> Reading:
  """One passage's logits and text mask ([L] each; `subword`: `subword_ids`) -> its Reading:
  the best span, extended to whole words."""
  sub = np.zeros(len(text_mask), bool)
  sub[: len(enc.ids)] = subword[np.asarray(enc.ids)]
  spans = best_spans(start, end, text_mask, max_answer_length, sub)
  if not spans:
    return Reading("", 2 * NEG, select, enc.title, enc.text, 0, 0)
  s, e, sc = spans[0]
  a, b = char_span(enc, s, e)
  return Reading(enc.text[a:b], sc, select, enc.title, enc.text, a, b)


def make_forward(graphdef):
  return jax.jit(lambda params, ids, mask: nnx.merge(graphdef, params)(ids, mask))


def _to_host(x: jax.Array) -> np.ndarray:
  """A global array's values on every process."""
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def read_pairs(forward, params, pairs: list[tuple[str, dict]], tok, *, batch_size: int,
               max_answer_length: int, mesh, bucket_multiple: int = 32,
               progress: bool = True) -> list[Reading]:
  """[(question, ctx {title, text})] -> one Reading each, in order. Pairs are read longest-last
  in batches padded to a multiple of `bucket_multiple`; every process reads its rows of each
  batch and receives every reading."""
  encs = [tok.encode(q, c.get("title") or "", c["text"]) for q, c in pairs]
  subword = subword_ids(tok.hf)
  order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
  n_dev = sharding.batch_size_multiple(mesh)
  bs = -(-batch_size // n_dev) * n_dev
  out: list[Reading | None] = [None] * len(encs)
  for s in tqdm(range(0, len(order), bs), desc="read", unit="batch", mininterval=2,
                disable=not progress or len(order) <= bs or jax.process_index() != 0):
    idx = order[s: s + bs]
    n = -(-len(idx) // n_dev) * n_dev  # a short last batch: only as many rows as the devices need
    rows = [[encs[i]] for i in idx] + [[encs[idx[0]]]] * (n - len(idx))
    length = buckets.bucket_length(max(len(r[0].ids) for r in rows), bucket_multiple,
                                   tok.max_length)
    b = reader_data.pad_inputs(rows, length)
    g = sharding.host_to_global(
        harness.local_rows({"ids": b["input_ids"], "mask": b["attention_mask"]}), mesh)
    start, end, select = (_to_host(x) for x in forward(params, g["ids"], g["mask"]))
    for r, i in enumerate(idx):
      out[i] = read_one(encs[i], start[r, 0], end[r, 0], b["text_mask"][r, 0],
                        float(select[r, 0]), subword, max_answer_length)
  return out


def choose(readings: list[Reading], k: int, scoring: str = "select",
           retriever_scores=None, fusion_weight: float = 1.0) -> tuple[int, float]:
  """The index (< k) of the reading whose answer is chosen, and its decision score."""
  if scoring not in SCORINGS:
    raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
  r = readings[:k]
  sel = np.array([x.select for x in r])
  if scoring == "select":
    score = sel
  else:
    score = sel + np.array([x.span_score for x in r])
    if scoring == "fused":
      if retriever_scores is None or len(retriever_scores) < len(r):
        raise ValueError("fused scoring needs a retriever score for every passage read")
      z = np.asarray(retriever_scores[: len(r)], np.float64)
      sd = z.std()
      score = score + fusion_weight * ((z - z.mean()) / sd if sd > 0 else np.zeros_like(z))
  j = int(np.argmax(score))
  return j, float(score[j])


def retriever_scores(result: dict):
  s = [c.get("score") for c in result["ctxs"]]
  return None if any(x is None for x in s) else [float(x) for x in s]


def prediction(result: dict, readings: list[Reading], k: int, scoring: str = "select",
               fusion_weight: float = 1.0) -> dict:
  """The answer to one result from its readings (first k): {question, answers, prediction,
  title, passage_id, passage_rank, passage, start_char, end_char, score, span_score,
  passage_score, retriever_score}; passage[start_char:end_char] == prediction, the span read."""
  rs = retriever_scores(result)
  j, _ = choose(readings, k, scoring, rs, fusion_weight)
  r = readings[j]
  return {"question": result["question"], "answers": result["answers"], "prediction": r.answer,
          "title": r.title, "passage_id": result["ctxs"][j].get("id"), "passage_rank": j,
          "passage": r.text, "start_char": r.start_char, "end_char": r.end_char,
          "score": r.span_score, "span_score": r.span_score,
          "passage_score": r.select, "retriever_score": None if rs is None else rs[j]}


def read_results(forward, params, results: list[dict], tok, *, top_k: int, batch_size: int,
                 max_answer_length: int, mesh, progress: bool = True) -> list[list[Reading]]:
  """The readings of each result's top `top_k` passages."""
  for i, r in enumerate(results):
    if not r["ctxs"]:
      raise reader_data.ReaderDataError(
          f"result {i} ({r['question'][:60]!r}): no retrieved passages to read")
  pairs = [(r["question"], c) for r in results for c in r["ctxs"][:top_k]]
  flat = read_pairs(forward, params, pairs, tok, batch_size=batch_size,
                    max_answer_length=max_answer_length, mesh=mesh, progress=progress)
  out, s = [], 0
  for r in results:
    n = len(r["ctxs"][:top_k])
    out.append(flat[s: s + n])
    s += n
  return out


def predict(forward, params, results, tok, *, top_k: int, batch_questions: int,
            max_answer_length: int, mesh, scoring: str = "select",
            fusion_weight: float = 1.0) -> list[dict]:
  """Reads the top `top_k` passages of each result -> one `prediction` each."""
  readings = read_results(forward, params, results, tok, top_k=top_k,
                          batch_size=batch_questions * top_k,
                          max_answer_length=max_answer_length, mesh=mesh,
                          progress=len(results) > batch_questions)
  return [prediction(r, rd, top_k, scoring, fusion_weight) for r, rd in zip(results, readings)]


def score(preds: list[dict]) -> dict:
  em = [answers.exact_match(p["prediction"], p["answers"]) for p in preds]
  f = [answers.f1(p["prediction"], p["answers"]) for p in preds]
  return {"em": float(np.mean(em)) if em else 0.0, "f1": float(np.mean(f)) if f else 0.0,
          "count": len(preds)}
