"""DPR's answer matching, on hand-worked cases."""
import json
import unicodedata

import pytest

from dpr_jax.data.answers import has_answer, tokens


def test_tokens_like_dpr_simple_tokenizer():
  assert tokens("Röntgen, 1901.") == [unicodedata.normalize("NFD", "röntgen"), ",", "1901", "."]
  assert tokens("U.S.A.") == ["u", ".", "s", ".", "a", "."]


def test_whole_token_sequence_not_substring():
  assert has_answer(["Paris"], "He moved to Paris, France.")
  assert not has_answer(["Paris"], "He moved to Parisian suburbs.")
  assert has_answer(["New York City"], "the new york city marathon")
  assert not has_answer(["New York City"], "new york's city hall")


def test_unicode_composed_and_decomposed_match():
  composed = "Wilhelm Conrad R\u00f6ntgen won."
  decomposed = "Wilhelm Conrad Ro\u0308ntgen won."
  assert has_answer(["Wilhelm Conrad Röntgen"], composed)
  assert has_answer(["Wilhelm Conrad Röntgen"], decomposed)
  assert not has_answer(["Wilhelm Conrad Rontgen"], composed)  # accents are kept


def test_punctuation_is_tokenised():
  assert has_answer(["May 18 , 2018"], "released on May 18, 2018 in cinemas")
  assert has_answer(["$5"], "it cost $5.")
  assert not has_answer([""], "anything")


def test_regex_mode_on_curatedtrec(squad_dir):
  f = squad_dir.parent / "dpr_qas" / "curatedtrec-test.jsonl"
  recs = [json.loads(l) for l in open(f)]
  mckinley = next(r for r in recs if r["question"] == "How tall is Mount McKinley?")
  assert has_answer(mckinley["answer"], "Denali rises to 20,320 feet above sea level.", "regex")
  assert has_answer(mckinley["answer"], "a 6,194-meter peak", "regex")
  assert not has_answer(mckinley["answer"], "It is 5,000 feet tall.", "regex")
  miller = next(r for r in recs if "Arthur Miller" in r["question"])
  assert has_answer(miller["answer"], "his play after the fall (1964)", "regex")  # case-insensitive


def test_unknown_mode():
  with pytest.raises(ValueError, match="match mode"):
    has_answer(["a"], "a", "fuzzy")


def test_squad_em_and_f1_by_hand():
  from dpr_jax.data.answers import exact_match, f1
  assert exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0
  assert exact_match("Eiffel", ["eiffel tower"]) == 0.0
  # prediction "eiffel", gold "eiffel tower": precision 1, recall 1/2 -> F1 2/3
  assert abs(f1("Eiffel", ["eiffel tower", "paris"]) - 2 / 3) < 1e-9
  assert f1("london", ["paris"]) == 0.0


def test_passage_matcher_tokenises_each_passage_once(monkeypatch):
  from dpr_jax.data import answers
  texts = ["Röntgen won in 1901.", "Paris, France.", "the 1901 prize"]
  calls = []
  real = answers.tokens
  monkeypatch.setattr(answers, "tokens", lambda t: calls.append(t) or real(t))
  m = answers.PassageMatcher(texts)
  asked = [(["1901"], 0), (["roentgen"], 0), (["paris"], 1), (["1901"], 2), (["france"], 2),
           (["Röntgen"], 0)]
  assert [m(a, r) for a, r in asked] == [True, False, True, True, False, True]
  assert sorted(c for c in calls if c in texts) == sorted(texts)  # each passage once
  small = answers.PassageMatcher(texts, max_cached=2)  # full: emptied, then filled again
  assert [small(a, r) for a, r in asked] == [True, False, True, True, False, True]
  assert answers.PassageMatcher(texts, "regex")([r"19\d\d"], 2)
  with pytest.raises(ValueError, match="match mode"):
    answers.PassageMatcher(texts, "fuzzy")
