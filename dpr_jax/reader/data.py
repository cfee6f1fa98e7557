"""Reader inputs from retrieval results: tokenisation with character offsets, answer-span
labelling, and fixed-shape batches.

A retrieval results file (`dpr_jax.retrieval.retrieve`, DPR's format) gives per question its answers and
ranked passages with `has_answer`; passages without text (`--no_text`) are filled from the
corpus by id. Span labels are token-level, as DPR does: an answer occurs where its word-piece
sequence occurs in the passage text's word pieces, so the tokenizer's normalisation (lower case,
accents stripped for uncased BERT) applies to both sides, and every occurrence is kept.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dpr_jax.data import buckets


class ReaderDataError(ValueError):
  pass


@dataclasses.dataclass
class Encoded:
  """One (question, passage) input: ids [<= L]; text tokens are ids[text_start:text_end];
  offsets[i] = (char start, char end) in the passage text of text token i."""
  ids: list[int]
  text_start: int
  text_end: int
  offsets: list[tuple[int, int]]
  text: str
  title: str


def load_results(path, corpus=None, limit: int | None = None) -> list[dict]:
  """A results JSON (list of {question, answers, ctxs}) with every ctx's title and text."""
  from dpr_jax.data.textio import read_json
  from dpr_jax.retrieval.evaluate import check_results
  rows = check_results(read_json(path, "retrieval results JSON"), path)
  index = None
  out = []
  for i, r in enumerate(rows[:limit] if limit else rows):
    for key in ("question", "answers", "ctxs"):
      if key not in r:
        raise ReaderDataError(f"{path}: record {i} has no {key!r} (expected DPR results: "
                              "question, answers, ctxs)")
    for c in r["ctxs"]:
      if "text" not in c:
        if corpus is None:
          raise ReaderDataError(f"{path}: record {i} passage {c.get('id')!r} has no text "
                                "(results written with --no_text): pass the corpus (--passages)")
        if index is None:
          index = {pid: j for j, pid in enumerate(corpus.ids)}
        if str(c["id"]) not in index:
          raise ReaderDataError(f"{path}: record {i} passage id {c['id']!r} is not in the corpus")
        j = index[str(c["id"])]
        c["title"], c["text"] = corpus.titles[j], corpus.texts[j]
    out.append(r)
  return out


class ReaderTokenizer:
  """`[CLS] question [SEP] title [SEP] text [SEP]` with the text's character offsets."""

  def __init__(self, name_or_path, max_length: int = 256, question_max_length: int = 48):
    from dpr_jax.models.tokenization import Tokenizer
    self.hf = Tokenizer(name_or_path).hf
    self.max_length, self.question_max_length = max_length, question_max_length
    self.cls, self.sep = self.hf.cls_token_id, self.hf.sep_token_id

  def pieces(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = self.hf(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

  def encode(self, question: str, title: str, text: str) -> Encoded:
    q = self.pieces(question)[0][: self.question_max_length]
    t = self.pieces(title)[0] if title else []
    head = [self.cls] + q + [self.sep] + (t + [self.sep] if t else [])
    if len(head) > self.max_length // 2:  # a very long title never crowds out the text
      head = head[: self.max_length // 2 - 1] + [self.sep]
    ids, offsets = self.pieces(text)
    room = max(0, self.max_length - len(head) - 1)
    ids, offsets = ids[:room], offsets[:room]
    return Encoded(head + ids + [self.sep], len(head), len(head) + len(ids), offsets, text, title)

  def answer_pieces(self, answer: str) -> list[int]:
    return self.pieces(answer)[0]


def find_spans(enc: Encoded, answers, tok: ReaderTokenizer) -> list[tuple[int, int]]:
  """Every occurrence of every answer in the (possibly truncated) passage text, as inclusive
  (start, end) positions in `enc.ids`."""
  text = enc.ids[enc.text_start: enc.text_end]
  spans = set()
  for a in answers:
    p = tok.answer_pieces(a)
    if not p:
      continue
    for i in range(len(text) - len(p) + 1):
      if text[i: i + len(p)] == p:
        spans.add((enc.text_start + i, enc.text_start + i + len(p) - 1))
  return sorted(spans)


def span_text(enc: Encoded, s: int, e: int) -> str:
  """Token span (positions in enc.ids) -> the passage-text substring it covers."""
  a, b = s - enc.text_start, e - enc.text_start
  return enc.text[enc.offsets[a][0]: enc.offsets[b][1]]


@dataclasses.dataclass
class TrainItem:
  question: str
  answers: list[str]
  positives: list[Encoded]
  positive_spans: list[list[tuple[int, int]]]
  negatives: list[Encoded]


def train_items(results: list[dict], tok: ReaderTokenizer, *, top: int = 100,
                max_positives: int = 10) -> tuple[list[TrainItem], dict]:
  """DPR's reader training data: positives are top-`top` passages with an answer that survives
  truncation, negatives those without an answer. Questions without a positive are skipped and
  counted (returned in the stats)."""
  items, stats = [], {"questions": len(results), "skipped_no_positive": 0}
  for r in results:
    pos, spans, neg = [], [], []
    for c in r["ctxs"][:top]:
      enc = tok.encode(r["question"], c.get("title", ""), c["text"])
      if c.get("has_answer"):
        found = find_spans(enc, r["answers"], tok)
        if found and len(pos) < max_positives:
          pos.append(enc)
          spans.append(found)
      else:
        neg.append(enc)
    if not pos:
      stats["skipped_no_positive"] += 1
      continue
    items.append(TrainItem(r["question"], r["answers"], pos, spans, neg))
  return items, stats


def pad_inputs(encs: list[list[Encoded]], length: int) -> dict[str, np.ndarray]:
  """[N][M] encodings -> input_ids, attention_mask, text_mask: [N, M, L] int32."""
  n, m = len(encs), len(encs[0])
  out = {k: np.zeros((n, m, length), np.int32) for k in ("input_ids", "attention_mask",
                                                         "text_mask")}
  for i, row in enumerate(encs):
    for j, e in enumerate(row):
      out["input_ids"][i, j, : len(e.ids)] = e.ids
      out["attention_mask"][i, j, : len(e.ids)] = 1
      out["text_mask"][i, j, e.text_start: e.text_end] = 1
  return out


def train_batch(items: list[TrainItem], rng: np.random.Generator, passages: int, length: int,
                max_spans: int = 10, bucket_multiple: int = 0) -> dict[str, np.ndarray]:
  """N items -> a batch of one positive (index 0) + `passages`-1 negatives each (fewer
  negatives are filled with other positives' neighbours: a random negative of another item).
  Inputs are padded to the longest rounded up to a multiple of `bucket_multiple` (at most
  `length`; 0: to `length`), `dpr_jax.data.buckets`."""
  rows, starts, ends, masks = [], [], [], []
  all_negs = [e for it in items for e in it.negatives] or [items[0].positives[0]]
  for it in items:
    k = int(rng.integers(len(it.positives)))
    negs = [it.negatives[i] for i in rng.permutation(len(it.negatives))[: passages - 1]]
    while len(negs) < passages - 1:
      negs.append(all_negs[int(rng.integers(len(all_negs)))])
    rows.append([it.positives[k]] + negs)
    sp = it.positive_spans[k][:max_spans]
    starts.append([s for s, _ in sp] + [0] * (max_spans - len(sp)))
    ends.append([e for _, e in sp] + [0] * (max_spans - len(sp)))
    masks.append([1] * len(sp) + [0] * (max_spans - len(sp)))
  longest = max(len(e.ids) for row in rows for e in row)
  b = pad_inputs(rows, buckets.bucket_length(longest, bucket_multiple, length))
  b.update(span_start=np.array(starts, np.int32), span_end=np.array(ends, np.int32),
           span_mask=np.array(masks, np.int32))
  return b
