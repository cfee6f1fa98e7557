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

from dpr_jax.data import buckets, examples


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
  from dpr_jax.data.results import check_results
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

  def _head(self, question: str, title: str) -> list[int]:
    q = self.pieces(question)[0][: self.question_max_length]
    t = self.pieces(title)[0] if title else []
    head = [self.cls] + q + [self.sep] + (t + [self.sep] if t else [])
    if len(head) > self.max_length // 2:  # a very long title never crowds out the text
      head = head[: self.max_length // 2 - 1] + [self.sep]
    return head

  def text_room(self, question: str, title: str) -> int:
    """How many text pieces fit after the question and title."""
    return max(0, self.max_length - len(self._head(question, title)) - 1)

  def encode(self, question: str, title: str, text: str, first: int = 0) -> Encoded:
    """The text read from its `first` piece on (0: from the start), cut at max_length."""
    head = self._head(question, title)
    ids, offsets = self.pieces(text)
    room = max(0, self.max_length - len(head) - 1)
    ids, offsets = ids[first: first + room], offsets[first: first + room]
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


def examples_from_results(results: list[dict], top: int = 100) -> list[examples.Example]:
  """Retrieval results -> DPR training examples: the top-`top` passages marked `has_answer` are
  positives, the others hard negatives (spans are checked when a batch is built)."""
  out = []
  for r in results:
    ctxs = r["ctxs"][:top]
    psg = lambda c: examples.Passage(str(c.get("title") or ""), c["text"],
                                     None if c.get("id") is None else str(c["id"]))
    out.append(examples.Example(r["question"], tuple(r["answers"]),
                                tuple(psg(c) for c in ctxs if c.get("has_answer")),
                                tuple(psg(c) for c in ctxs if not c.get("has_answer")), ()))
  return out


def positive_input(ex: examples.Example, rng: np.random.Generator, tok: ReaderTokenizer,
                   max_positives: int = 10):
  """A random positive of `ex` -> (Encoded, answer spans, windowed, Passage) or None when
  no positive holds an answer. A positive whose answers all lie past the length cut is read as
  the window that starts `window_start` pieces in (so long passages still teach)."""
  for k in rng.permutation(min(len(ex.positives), max_positives)):
    p = ex.positives[int(k)]
    enc = tok.encode(ex.question, p.title, p.text)
    found = find_spans(enc, ex.answers, tok)
    if found:
      return enc, found, False, p
    first = window_start(tok, ex.question, p.title, p.text, ex.answers)
    if first is not None:
      enc = tok.encode(ex.question, p.title, p.text, first=first)
      found = find_spans(enc, ex.answers, tok)
      if found:
        return enc, found, True, p
  return None


def window_start(tok: ReaderTokenizer, question: str, title: str, text: str, answers):
  """The first text piece of a window that holds the first answer occurrence past the cut near
  its middle; None when no answer occurs in the text."""
  pieces = tok.pieces(text)[0]
  room = tok.text_room(question, title)
  for a in answers:
    ap = tok.answer_pieces(a)
    for i in range(len(pieces) - len(ap) + 1) if ap else ():
      if pieces[i: i + len(ap)] == ap:
        return max(0, min(i - (room - len(ap)) // 2, len(pieces) - room))
  return None


def train_batch(exs: list[examples.Example], candidates: list[int], rng: np.random.Generator,
                tok: ReaderTokenizer, *, questions: int, passages: int, max_spans: int = 10,
                bucket_multiple: int = 0) -> tuple[dict[str, np.ndarray], dict]:
  """The first `questions` of `candidates` (indices into `exs`) whose positive holds an answer
  -> (batch, stats). Each row: one positive (index 0) + `passages`-1 negatives (its hard
  negatives, then its other negatives, then passages of the batch's other questions), none of
  them the row's positive (`examples.same_passage`: another question on the same paragraph, a
  negative that repeats the positive). A row left short is filled with empty slots
  (`[CLS] [SEP]`, `passage_mask` 0) that the selection loss leaves out. Inputs
  are padded to the longest rounded up to a multiple of `bucket_multiple` (at most the
  tokenizer's max_length; 0: to it), `dpr_jax.data.buckets`. stats: skipped questions (no
  answer in any positive) and positives read as a window past the cut."""
  rows, starts, ends, masks, own, qs, positives = [], [], [], [], [], [], []
  stats = {"skipped_no_answer": 0, "windowed_positives": 0}
  for i in candidates:
    if len(rows) == questions:
      break
    ex = exs[i]
    pos = positive_input(ex, rng, tok)
    if pos is None:
      stats["skipped_no_answer"] += 1
      continue
    enc, found, windowed, psg = pos
    stats["windowed_positives"] += int(windowed)
    negs = [n for n in list(ex.hard_negatives) + list(ex.negatives)
            if not examples.same_passage(n, psg)]
    pick = [negs[j] for j in rng.permutation(len(negs))[: passages - 1]]
    own.append(pick)
    qs.append(ex.question)
    positives.append(psg)
    rows.append([enc] + [tok.encode(ex.question, n.title, n.text) for n in pick])
    sp = found[:max_spans]
    starts.append([s for s, _ in sp] + [0] * (max_spans - len(sp)))
    ends.append([e for _, e in sp] + [0] * (max_spans - len(sp)))
    masks.append([1] * len(sp) + [0] * (max_spans - len(sp)))
  if len(rows) < questions:
    raise ReaderDataError(f"only {len(rows)} of {len(candidates)} candidate questions have an "
                          f"answer in a positive passage; {questions} are needed per batch")
  real = [[1] * len(row) + [0] * (passages - len(row)) for row in rows]
  for k, row in enumerate(rows):  # too few own negatives: other questions' passages
    differs = lambda n: not examples.same_passage(n, positives[k])
    others = [n for j, pick in enumerate(own) if j != k for n in pick if differs(n)] or [
        pos for j, pos in enumerate(positives) if j != k and differs(pos)]
    while len(row) < passages:
      if others:
        n = others[int(rng.integers(len(others)))]
        row.append(tok.encode(qs[k], n.title, n.text))
        real[k][len(row) - 1] = 1
      else:
        row.append(Encoded([tok.cls, tok.sep], 1, 1, [], "", ""))
  longest = max(len(e.ids) for row in rows for e in row)
  b = pad_inputs(rows, buckets.bucket_length(longest, bucket_multiple, tok.max_length))
  b.update(span_start=np.array(starts, np.int32), span_end=np.array(ends, np.int32),
           span_mask=np.array(masks, np.int32), passage_mask=np.array(real, np.int32))
  return b, stats


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
