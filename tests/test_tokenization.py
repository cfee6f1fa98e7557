import numpy as np
import pytest

from dpr_jax.models.tokenization import Tokenizer


@pytest.fixture(scope="module")
def tok(minilm_path):
  return Tokenizer(minilm_path, question_max_length=16, passage_max_length=24)


def _ids(tok, text):
  return tok.hf.convert_tokens_to_ids(tok.hf.tokenize(text))


def test_question_alone_padded_to_max(tok):
  b = tok.questions(["Who wrote Hamlet?"])
  cls, sep = tok.hf.cls_token_id, tok.hf.sep_token_id
  want = [cls] + _ids(tok, "who wrote hamlet?") + [sep]
  assert b["input_ids"].shape == (1, 16) and b["input_ids"].dtype == np.int32
  assert list(b["input_ids"][0, : len(want)]) == want
  assert b["attention_mask"][0].sum() == len(want)
  assert (b["input_ids"][0, len(want):] == tok.pad_id).all()


def test_passage_is_title_sep_text(tok):
  b = tok.passages(["Hamlet"], ["A tragedy by Shakespeare."], pad_to_max=False, pad_multiple=1)
  cls, sep = tok.hf.cls_token_id, tok.hf.sep_token_id
  want = [cls] + _ids(tok, "hamlet") + [sep] + _ids(tok, "a tragedy by shakespeare.") + [sep]
  assert list(b["input_ids"][0]) == want


def test_empty_title_and_mixed_batch(tok):
  b = tok.passages(["", "T"], ["some text", "other text"], pad_to_max=False, pad_multiple=1)
  cls, sep = tok.hf.cls_token_id, tok.hf.sep_token_id
  assert list(b["input_ids"][0][: b["attention_mask"][0].sum()]) == (
      [cls] + _ids(tok, "some text") + [sep])
  assert list(b["input_ids"][1]) == [cls] + _ids(tok, "t") + [sep] + _ids(tok, "other text") + [sep]


def test_truncation_keeps_final_sep(tok):
  b = tok.passages(["Title"], ["word " * 100])
  assert b["input_ids"].shape == (1, 24) and b["attention_mask"].sum() == 24
  assert b["input_ids"][0, -1] == tok.hf.sep_token_id
  q = tok.questions(["what " * 50])
  assert q["input_ids"][0, -1] == tok.hf.sep_token_id


def test_length_buckets(tok):
  b = tok.passages(["a", "b"], ["x", "y y y"], pad_to_max=False, pad_multiple=8)
  assert b["input_ids"].shape == (2, 8)
