"""Overlapping word windows of long passages, and retrieval results mapped back to passages.

A dense encoder reads at most `passage_max_length` tokens, so the end of a long paragraph is
never seen by it. Indexing each paragraph as overlapping windows of `words` words (DPR cut
Wikipedia into 100-word passages) lets every word be read; the retrieved windows are then mapped
back to their paragraph (ranked by its best window) so that results are compared paragraph to
paragraph with a retriever that indexed the paragraphs whole.

A window's id is `PARAGRAPH_ID~FIRST_WORD`: `python -m dpr_jax.prepare windows` writes them as a
corpus TSV, and `python -m dpr_jax.retrieve --paragraphs` maps results back.
"""
from __future__ import annotations

SEP = "~"


def split_words(text: str, words: int, stride: int) -> list[tuple[int, str]]:
  """[(first word, window text)]: windows of `words` words every `stride` words; the last one
  ends at the last word. A text of at most `words` words is one window."""
  if words < 1 or not 1 <= stride <= words:
    raise ValueError(f"windows: expected 1 <= stride <= words, found words={words}, "
                     f"stride={stride}")
  w = text.split()
  if len(w) <= words:
    return [(0, text)]
  starts = list(range(0, len(w) - words, stride)) + [len(w) - words]
  return [(s, " ".join(w[s:s + words])) for s in starts]


def window_corpus(ids, titles, texts, words: int = 100, stride: int = 50):
  """-> (window ids, titles, texts) of every passage's windows, in corpus order."""
  out_ids, out_titles, out_texts = [], [], []
  for pid, title, text in zip(ids, titles, texts):
    if SEP in str(pid):
      raise ValueError(f"windows: passage id {pid!r} contains {SEP!r}, which window ids use")
    for start, t in split_words(text, words, stride):
      out_ids.append(f"{pid}{SEP}{start}")
      out_titles.append(title)
      out_texts.append(t)
  return out_ids, out_titles, out_texts


def paragraph_of(window_id) -> str:
  head, sep, _ = str(window_id).rpartition(SEP)
  if not sep:
    raise ValueError(f"expected a window id PARAGRAPH{SEP}FIRST_WORD, found {window_id!r}")
  return head


def to_paragraphs(results: list[dict], corpus, k: int, match: str = "string",
                  with_text: bool = True) -> list[dict]:
  """Results over windows -> results over `corpus`'s paragraphs: each paragraph at the rank of
  its best window (with that window's score), duplicates dropped, the first `k` kept;
  `has_answer` is recomputed on the paragraph's text. A list is shorter than `k` when its
  windows fall on fewer paragraphs: `retrieval.retrieve.paragraph_results` fetches deeper."""
  from dpr_jax.data.answers import PassageMatcher
  row = {str(pid): i for i, pid in enumerate(corpus.ids)}
  out, has_answer = [], PassageMatcher(corpus.texts, match)
  for n, r in enumerate(results):
    seen, ctxs = set(), []
    for c in r["ctxs"]:
      pid = paragraph_of(c["id"])
      if pid not in row:
        raise ValueError(f"record {n}: window {c['id']!r} belongs to no paragraph of "
                         f"{corpus.path}")
      if pid in seen:
        continue
      seen.add(pid)
      i = row[pid]
      ctx = {"id": pid, "score": c.get("score"),
             "has_answer": has_answer(r["answers"], i)}
      if with_text:
        ctx.update(title=corpus.titles[i], text=corpus.texts[i])
      ctxs.append(ctx)
      if len(ctxs) == k:
        break
    out.append({**r, "ctxs": ctxs})
  return out


def is_window_id(pid) -> bool:
  """Whether `pid` has the form of a window id, PARAGRAPH~FIRST_WORD."""
  head, sep, tail = str(pid).rpartition(SEP)
  return bool(sep and head and tail.isdigit())
