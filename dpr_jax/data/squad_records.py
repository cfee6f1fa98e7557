"""DPR training records from SQuAD questions: the held-out split by article and each question's
positive and BM25 hard-negative contexts. Used by `prepare squad` and by the demo slice builder."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from dpr_jax.data import answers as answer_lib
from dpr_jax.retrieval.bm25 import BM25


def split_articles(titles, num_val: int, seed: int, splits: int = 1) -> list[set[str]]:
  """`splits` disjoint sets of `num_val` article titles: set i is drawn with seed `seed + i`
  from the sorted distinct titles not in an earlier set (set 0 is the same for any `splits`)."""
  left = sorted(set(titles))
  if num_val * splits >= len(left):
    raise ValueError(f"cannot hold out {splits} x {num_val} of {len(left)} articles")
  sets = []
  for i in range(splits):
    rng = np.random.default_rng(seed + i)
    sets.append({left[j] for j in rng.choice(len(left), num_val, replace=False)})
    left = [t for t in left if t not in sets[-1]]
  return sets


def _ctx(corpus, row: int) -> dict:
  return {"title": corpus.titles[row], "text": corpus.texts[row], "passage_id": corpus.ids[row]}


def build_records(questions, corpus, bm25: BM25, num_hard_negatives: int, depth: int,
                  desc: str = "") -> tuple[list[dict], int]:
  """DPR records for `questions`; returns them and how many lacked enough hard negatives."""
  row_of = {pid: i for i, pid in enumerate(corpus.ids)}
  top, _ = bm25.search([q.question for q in questions], k=depth)
  records, short = [], 0
  token_cache: dict[int, list[str]] = {}
  for q, rows in zip(tqdm(questions, desc=desc, unit="q", mininterval=2), top):
    positives = [row_of[p] for p in q.positive_pids]
    hard = []
    for r in rows:
      r = int(r)
      if r in positives:
        continue
      if r not in token_cache:
        token_cache[r] = answer_lib.tokens(corpus.texts[r])
      if answer_lib.has_answer_tokens(q.answers, token_cache[r]):
        continue
      hard.append(r)
      if len(hard) == num_hard_negatives:
        break
    short += len(hard) < num_hard_negatives
    records.append({"id": q.id, "question": q.question, "answers": q.answers,
                    "positive_ctxs": [_ctx(corpus, r) for r in positives], "negative_ctxs": [],
                    "hard_negative_ctxs": [_ctx(corpus, r) for r in hard]})
  return records, short
