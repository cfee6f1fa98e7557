"""Length buckets: each batch is padded to the next multiple of a bucket size, not to the maximum.

A compiled step is specialised to its input shapes, so padding every batch to the longest
sequence it holds would compile once per distinct length. Rounding that length up to a multiple
of `multiple` (capped at the maximum length) leaves a handful of shapes (e.g. 32, 64, ..., 256)
while most of the padding of a pad-to-max batch is never fed. `multiple = 0` pads to the maximum
(one shape). Padded positions are masked out of attention and pooling, so the embeddings do not
depend on the bucket (tests/test_bucketing.py).
"""
from __future__ import annotations

import numpy as np


def bucket_length(longest: int, multiple: int, max_length: int) -> int:
  """The padded length of a batch whose longest sequence has `longest` tokens."""
  if multiple < 0:
    raise ValueError(f"bucket multiple must be >= 0, got {multiple}")
  if longest > max_length:
    raise ValueError(f"a sequence of {longest} tokens exceeds the maximum length {max_length}")
  if multiple == 0:
    return max_length
  return min(max_length, max(1, -(-longest // multiple)) * multiple)


def bucket_lengths_of(mask: np.ndarray, multiple: int, max_length: int) -> int:
  """`bucket_length` of a [N, L] attention mask's longest row."""
  longest = int(mask.sum(1).max()) if len(mask) else 1
  return bucket_length(longest, multiple, max_length)


def pad_to(ids: np.ndarray, mask: np.ndarray, length: int, pad_id: int = 0):
  """[N, l] ids and mask (l <= length, or l > length with nothing real beyond `length`)
  -> [N, length] int32 copies, padded with `pad_id` / 0."""
  n, l = ids.shape
  if l > length and mask[:, length:].any():
    raise ValueError(f"cannot cut rows of up to {int(mask.sum(1).max())} tokens to {length}")
  out_ids = np.full((n, length), pad_id, np.int32)
  out_mask = np.zeros((n, length), np.int32)
  w = min(l, length)
  out_ids[:, :w], out_mask[:, :w] = ids[:, :w], mask[:, :w]
  return out_ids, out_mask


def padding_fraction(mask: np.ndarray) -> float:
  """Tokens padded / tokens fed of a [N, L] attention mask."""
  return float(1.0 - mask.sum() / max(mask.size, 1))


def length_sorted_batches(lengths: np.ndarray, batch_size: int, multiple: int, max_length: int):
  """Rows sorted longest first, cut into batches of `batch_size`: [(row indices, padded length)].
  Sorting puts similar lengths together, so each batch's bucket is close to its rows' lengths."""
  order = np.argsort(-np.asarray(lengths), kind="stable")
  out = []
  for s in range(0, len(order), batch_size):
    sel = order[s:s + batch_size]
    out.append((sel, bucket_length(int(lengths[sel].max()), multiple, max_length)))
  return out


def group_questions(batch: dict[str, np.ndarray], groups: int, per_question: int, multiple: int,
                    max_length: int) -> dict[str, np.ndarray]:
  """A dual-encoder batch {q_ids, q_mask: [B, Lq], p_ids, p_mask: [B*per_question, Lp]} ->
  the same examples sorted by question length (stable; each question's passages move with it),
  the questions cut into `groups` equal parts `q_ids_G` / `q_mask_G`, each padded to its own
  bucket (`multiple`, at most `max_length`). The in-batch loss does not depend on the order of
  its examples, so a step that encodes the groups and concatenates them computes the loss of the
  original batch while a batch of short questions is not padded to its longest one."""
  b = len(batch["q_ids"])
  if groups < 1 or b % groups:
    raise ValueError(f"a batch of {b} questions does not split into {groups} question groups")
  order = np.argsort(batch["q_mask"].sum(1), kind="stable")
  rows = (order[:, None] * per_question + np.arange(per_question)).reshape(-1)
  out = {k: v[rows] for k, v in batch.items() if k.startswith("p_")}  # p_ids, p_mask, p_key
  n = b // groups
  for g in range(groups):
    sel = order[g * n:(g + 1) * n]
    ids, mask = batch["q_ids"][sel], batch["q_mask"][sel]
    out[f"q_ids_{g}"], out[f"q_mask_{g}"] = pad_to(
        ids, mask, bucket_length(int(mask.sum(1).max()), multiple, max_length))
  return out


def question_groups(batch: dict) -> list[tuple]:
  """[(q_ids, q_mask)] of a batch: its question groups in order, or its one question array."""
  if "q_ids" in batch:
    return [(batch["q_ids"], batch["q_mask"])]
  n = sum(k.startswith("q_ids_") for k in batch)
  return [(batch[f"q_ids_{g}"], batch[f"q_mask_{g}"]) for g in range(n)]
