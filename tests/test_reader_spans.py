"""Span decoding as DPR's `get_best_spans` / `_extend_span_to_full_words`: whole words on
hand-made word pieces and on the packaged tokenizer's, and the character offsets of the span
read."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpr_jax.models.reader import best_spans, extend_to_words
from dpr_jax.reader import data as reader_data
from dpr_jax.reader import predict as P


def test_extend_to_words_on_hand_made_pieces():
  # [CLS] q [SEP] | bell ##ingham ##shire is in bell ##ingham ##shire . | [SEP]
  #   0   1   2   |  3     4        5     6  7   8     9       10    11 |  12
  sub = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0], bool)
  assert extend_to_words(4, 4, sub, 3, 12) == (3, 5)    # starts on ##ingham: the whole word
  assert extend_to_words(3, 3, sub, 3, 12) == (3, 5)    # stops before ##ingham: the end grows
  assert extend_to_words(9, 11, sub, 3, 12) == (8, 11)  # '.' is not a piece of the word
  assert extend_to_words(6, 7, sub, 3, 12) == (6, 7)    # whole words stay as they are
  # a text that starts and ends inside words (a window, a length cut): bounded by the text
  assert extend_to_words(4, 4, sub, 4, 5) == (4, 4)
  assert extend_to_words(9, 9, sub, 3, 10) == (8, 9)


def test_best_spans_extends_after_choosing_and_keeps_the_score():
  sub = np.array([0, 0, 1, 1, 0, 0], bool)  # [CLS] w ##a ##b x [SEP]; text tokens 1..4
  mask = np.array([0, 1, 1, 1, 1, 0])
  start = np.array([9.0, 0.0, 3.0, 2.0, 1.0, 9.0])
  end = np.array([9.0, 0.0, 3.0, 2.0, 1.5, 9.0])
  # raw best (2, 2) = 6.0 -> the word (1, 3), score 6.0 (the chosen span's, as DPR)
  assert best_spans(start, end, mask, 10, sub) == [(1, 3, 6.0)]
  assert best_spans(start, end, mask, 10) == [(2, 2, 6.0)]  # no pieces given: not extended
  # then by score: (2,3)=5.0 and (3,3)=4.0 lie inside the *extended* (1,3) and are skipped,
  # though (3,3) does not nest with the raw (2,2); (2,4)=4.5 only overlaps (1,3), is kept and
  # extended to (1,4); every other candidate nests with (1,3) or (1,4)
  assert best_spans(start, end, mask, 10, sub, top_spans=3) == [(1, 3, 6.0), (1, 4, 4.5)]
  assert best_spans(start, end, np.zeros(6), 10, sub) == []


@pytest.fixture(scope="module")
def tok(minilm_path):
  return reader_data.ReaderTokenizer(minilm_path, max_length=48, question_max_length=8)


def _read(tok, text, s_piece, e_piece):
  """Reads `text` with start / end logits peaked on text pieces s_piece / e_piece."""
  enc = tok.encode("where?", "", text)
  length = len(enc.ids)
  start, end = np.zeros(length), np.zeros(length)
  start[enc.text_start + s_piece] = end[enc.text_start + e_piece] = 5.0
  mask = np.zeros(length)
  mask[enc.text_start: enc.text_end] = 1
  return P.read_one(enc, start, end, mask, 0.0, P.subword_ids(tok.hf), 10), enc


def test_readings_are_whole_words_with_the_packaged_tokenizer(tok):
  text = "It lies in Bellinghamshire, by the sea."
  _, enc = _read(tok, text, 0, 0)
  pieces = tok.hf.convert_ids_to_tokens(enc.ids[enc.text_start: enc.text_end])
  assert pieces[3:6] == ["bell", "##ingham", "##shire"]
  r, _ = _read(tok, text, 4, 4)              # starts on ##ingham
  assert r.answer == "Bellinghamshire" and text[r.start_char: r.end_char] == r.answer
  assert (r.start_char, r.end_char) == (11, 26) and r.span_score == 10.0
  r, _ = _read(tok, text, 3, 3)              # stops before ##ingham
  assert r.answer == "Bellinghamshire"
  r, _ = _read(tok, text, 2, 4)              # "in Bell|ingham": the end grows, not past ','
  assert r.answer == "in Bellinghamshire"
  # an uncased tokenizer's offsets stop before a decomposed accent: the span keeps it
  nfd = "The e\u0301te\u0301 was hot."
  r, enc = _read(tok, nfd, 1, 1)
  assert tok.hf.convert_ids_to_tokens(enc.ids[enc.text_start + 1: enc.text_start + 3]) == [
      "et", "##e"]
  assert r.answer == "e\u0301te\u0301" and (r.start_char, r.end_char) == (4, 9)


def test_predict_reads_whole_words_at_the_offsets_read(tok):
  """Through `predict` (the path of `python -m dpr_jax.answer`): question 0's answer occurs
  twice and the second is read: its offsets, not the first's; question 1's span starts on
  ##ingham: the whole word."""
  from dpr_jax.training import sharding
  text = "Paris is big. Her friend from Paris came to Bellinghamshire."
  rows = [{"question": q, "answers": [], "ctxs": [{"id": "p1", "title": "Friends", "text": text}]}
          for q in ("from where?", "to where?")]
  peak = {}
  for q, char in ((0, 30), (1, 48)):  # "Paris" at 30; "ingham" (##ingham) at 48: by hand
    enc = tok.encode(rows[q]["question"], "Friends", text)
    peak[tuple(enc.ids)] = next(i for i in range(enc.text_start, enc.text_end)
                                if enc.offsets[i - enc.text_start][0] == char)

  def forward(params, ids, mask):
    n, m, l = ids.shape
    start, end = np.zeros((n, m, l)), np.zeros((n, m, l))
    for r in range(n):
      at = peak[tuple(int(t) for t in np.asarray(ids[r, 0])[: int(mask[r, 0].sum())])]
      start[r, 0, at] = end[r, 0, at] = 4.0
    return jnp.asarray(start), jnp.asarray(end), jnp.zeros((n, m))

  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  paris, shire = P.predict(forward, None, rows, tok, top_k=1, batch_questions=2,
                           max_answer_length=10, mesh=mesh)
  assert paris["prediction"] == "Paris" and (paris["start_char"], paris["end_char"]) == (30, 35)
  assert paris["passage"][paris["start_char"]: paris["end_char"]] == paris["prediction"]
  assert paris["passage"].find("Paris") == 0  # the first occurrence is not the one read
  assert shire["prediction"] == "Bellinghamshire"
  assert (shire["start_char"], shire["end_char"]) == (44, 59)
