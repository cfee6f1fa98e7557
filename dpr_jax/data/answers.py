"""DPR's answer matching: does a passage contain an answer?

`string` mode (DPR's default): the answer's token sequence occurs in the passage's token sequence,
after Unicode NFD normalisation, lowercasing and DPR's `SimpleTokenizer` (runs of letters, digits
and marks, or any single other non-space character). `regex` mode (CuratedTREC): the answer is a
regular expression, NFD-normalised like the passage text and searched in it with the `regex`
module's IGNORECASE | UNICODE | MULTILINE flags (DPR's `has_answer` and `regex_match`,
dpr/data/qa_validation.py); a pattern that does not compile matches nothing.

SQuAD's EM / F1 are the official v1.1 evaluation script's (`normalize_answer`, `f1_score`,
`exact_match_score`, best over the reference answers), with its `re` word boundaries.
"""
from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections import Counter

import regex

_TOKEN = regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
                       flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
MATCH_MODES = ("string", "regex")


def normalize(text: str) -> str:
  return unicodedata.normalize("NFD", text)


def tokens(text: str) -> list[str]:
  """DPR's SimpleTokenizer, uncased: 'Röntgen, 1901.' -> ['röntgen', ',', '1901', '.'] (NFD)."""
  return [m.group().lower() for m in _TOKEN.finditer(normalize(text))]


@functools.lru_cache(maxsize=65536)
def _answer_tokens(answer: str) -> tuple[str, ...]:
  return tuple(tokens(answer))


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str):
  """The NFD-normalised pattern, compiled (None when it does not compile)."""
  try:
    return regex.compile(normalize(pattern),
                         flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
  except regex.error:
    return None


def has_answer_tokens(answers, words: list[str]) -> bool:
  """`string` mode on a passage already split by `tokens` (saves re-tokenising a corpus)."""
  for a in answers:
    a = _answer_tokens(a)
    n = len(a)
    if n and any(words[i] == a[0] and tuple(words[i:i + n]) == a
                 for i in range(len(words) - n + 1)):
      return True
  return False


def has_answer(answers, text: str, mode: str = "string") -> bool:
  """True if any of `answers` is found in `text` (DPR's `has_answer`)."""
  if mode == "string":
    return has_answer_tokens(answers, tokens(text))
  if mode == "regex":
    text = normalize(text)
    return any((r := _compiled(a)) is not None and r.search(text) is not None for a in answers)
  raise ValueError(f"match mode must be one of {MATCH_MODES}, got {mode!r}")


class PassageMatcher:
  """`has_answer` against the passages `texts[row]` of a corpus, each passage tokenised once
  however many questions retrieve it (`string` mode; at most `max_cached` passages are kept,
  the cache emptied when full)."""

  def __init__(self, texts, mode: str = "string", max_cached: int = 200_000):
    if mode not in MATCH_MODES:
      raise ValueError(f"match mode must be one of {MATCH_MODES}, got {mode!r}")
    self.texts, self.mode, self._words, self.max_cached = texts, mode, {}, max_cached

  def __call__(self, answers, row: int) -> bool:
    if self.mode != "string":
      return has_answer(answers, self.texts[row], self.mode)
    words = self._words.get(row)
    if words is None:
      if len(self._words) >= self.max_cached:
        self._words.clear()
      words = self._words[row] = tokens(self.texts[row])
    return has_answer_tokens(answers, words)


# SQuAD's answer scoring: the official v1.1 evaluation script's normalisation, with `re` (not
# `regex`: their \b differ next to combining marks and other non-alphanumeric word characters).
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
  """Lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers) -> float:
  """1.0 if the normalised prediction equals any normalised answer."""
  p = squad_normalize(prediction)
  return float(any(p == squad_normalize(a) for a in answers))


def f1(prediction: str, answers) -> float:
  """Best token-overlap F1 of the prediction against the answers."""
  pt = squad_normalize(prediction).split()
  best = 0.0
  for a in answers:
    at = squad_normalize(a).split()
    common = sum((Counter(pt) & Counter(at)).values())
    if common:
      prec, rec = common / len(pt), common / len(at)
      best = max(best, 2 * prec * rec / (prec + rec))
  return best
