"""DPR's answer matching, on hand-worked cases, and SQuAD's EM / F1 against the official
script."""
import json
import re
import string
import unicodedata
from collections import Counter

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


# Two records of CuratedTREC's test file (DPR's curatedtrec-test), answers as regular expressions.
CURATEDTREC = [
    {"question": "How tall is Mount McKinley?", "answer": [
        "20\\s?,?\\s?(32|40)0\\s?-?\\s?f(ee|oo)t|6,194-meter|20,?237\\s*f(oo|ee)?t|"
        "20,?073\\s*f(oo|ee)?t|6,?168\\s*m|6,118\\s*m|6\\,194 m|20\\,322 feet"]},
    {"question": "what Arthur Miller play recounts his marriage to Marilyn Monroe?",
     "answer": ["After the Fall|Finishing the Play"]},
]


def test_regex_mode_on_curatedtrec():
  recs = CURATEDTREC
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


def test_regex_mode_normalises_pattern_and_text_like_dpr():
  """DPR's `has_answer` (dpr/data/qa_validation.py) NFD-normalises the pattern and the text,
  and `regex_match` searches with the `regex` module, IGNORECASE | UNICODE | MULTILINE."""
  nfc, nfd = "Schr\u00f6dinger", "Schro\u0308dinger"
  for pattern in (nfc, nfd):
    for name in (nfc, nfd):
      assert has_answer([pattern], f"Erwin {name} (1887-1961) was a physicist.", "regex")
  assert not has_answer(["Schrodinger"], f"Erwin {nfc} was a physicist.", "regex")
  assert has_answer([nfc.lower()], "ERWIN SCHR\u00d6DINGER", "regex")              # IGNORECASE
  assert has_answer([r"^Erwin$"], "born 1887\nErwin\nin Vienna", "regex")            # MULTILINE
  assert has_answer([r"Schr\w+dinger"], f"Erwin {nfc}", "regex")  # regex's \w takes the mark
  # a class names single characters: after NFD, [öo] is [o, mark, o] and no longer takes ö
  assert not has_answer(["Schr[\u00f6o]dinger"], f"Erwin {nfc}", "regex")
  assert has_answer(["Schr[\u00f6o]dinger"], "Erwin Schrodinger", "regex")
  assert not has_answer(["Schr(dinger"], f"Erwin {nfc}", "regex")  # does not compile: no match


# The official SQuAD v1.1 evaluation script's scoring (evaluate-v1.1.py, distributed with the
# dataset at https://rajpurkar.github.io/SQuAD-explorer/), verbatim: the reference.
def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


ADVERSARIAL = [
    "the\u0301 cat", "a\u0301 cat", "\u0301the cat", "The\u0308 An\u0301 a",  # marks, articles
    "the\u00b2 cat", "an\u00bd", "the\u203fcat", "the\u200dcat", "the_cat",    # ², ½, ‿, ZWJ, _
    "The Eiffel Tower!", "eiffel tower", "an apple, a pear & the fig.",
    unicodedata.normalize("NFD", "Théâtre de l'Œuvre"), "Théâtre de l'Œuvre",
    "Ærø the\u00a0isle\u2003of\u3000man", "ΑΘΗΝΑ the Ελλάδα", "İstanbul the ǅ",
    "«the» — a “quote”", "t-h-e a.n", "", "   ", "the", "the the a an",
]


@pytest.mark.parametrize("prediction", ADVERSARIAL)
def test_squad_scoring_equals_the_official_script(prediction):
  from dpr_jax.data.answers import exact_match, f1, squad_normalize
  assert squad_normalize(prediction) == normalize_answer(prediction)
  for gold in ADVERSARIAL:
    assert exact_match(prediction, [gold]) == float(exact_match_score(prediction, gold))
    assert abs(f1(prediction, [gold]) - f1_score(prediction, gold)) < 1e-12
  golds = ADVERSARIAL[:5]  # best over several answers: the script's metric_max_over_ground_truths
  assert f1(prediction, golds) == max(f1_score(prediction, g) for g in golds)
