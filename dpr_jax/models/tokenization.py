"""DPR's tokenisation conventions on a Hugging Face fast (Rust) tokenizer.

- A question is tokenised alone: `[CLS] question [SEP]`.
- A passage is `[CLS] title [SEP] text [SEP]` (just `[CLS] text [SEP]` when the title is empty),
  as DPR's `BertTensorizer` does with `text_pair`.
- Token type ids are all zero, as DPR trained them, so they are not returned: the model defaults
  to zeros.
- Truncation cuts the content and keeps the final [SEP].
Padding is ours: to a fixed length (fixed shapes, one compilation) or to the next multiple of
`pad_multiple` (length buckets for encoding).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class Tokenizer:
  """Batched DPR tokenisation. Returns int32 `input_ids` and `attention_mask`, both [B, L]."""

  def __init__(self, name_or_path, question_max_length: int = 64,
               passage_max_length: int = 256):
    from transformers import AutoTokenizer
    from dpr_jax.models.hf import resolve_model_dir
    path = resolve_model_dir(name_or_path)
    self.hf = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    if not self.hf.is_fast:
      raise ValueError(f"{path}: no fast (Rust) tokenizer available")
    self.path = path
    self.question_max_length = question_max_length
    self.passage_max_length = passage_max_length
    self.pad_id = self.hf.pad_token_id if self.hf.pad_token_id is not None else 0

  def _pad(self, seqs: list[list[int]], length: int | None, multiple: int) -> dict:
    if length is None:
      longest = max((len(s) for s in seqs), default=1)
      length = -(-longest // multiple) * multiple
    ids = np.full((len(seqs), length), self.pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.int32)
    for i, s in enumerate(seqs):
      ids[i, : len(s)] = s
      mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}

  def questions(self, questions: Sequence[str], *, max_length: int | None = None,
                pad_to_max: bool = True, pad_multiple: int = 8) -> dict:
    """Questions -> {input_ids, attention_mask}: [B, L]; L = max_length when `pad_to_max`."""
    max_length = max_length or self.question_max_length
    enc = self.hf(list(questions), truncation=True, max_length=max_length,
                  add_special_tokens=True)["input_ids"]
    return self._pad(enc, max_length if pad_to_max else None, pad_multiple)

  def passages(self, titles: Sequence[str], texts: Sequence[str], *,
               max_length: int | None = None, pad_to_max: bool = True,
               pad_multiple: int = 8) -> dict:
    """Passages (`title [SEP] text`) -> {input_ids, attention_mask}: [B, L]."""
    max_length = max_length or self.passage_max_length
    if len(titles) != len(texts):
      raise ValueError(f"{len(titles)} titles for {len(texts)} texts")
    seqs: list = [None] * len(texts)
    with_title = [i for i, t in enumerate(titles) if t]
    without = [i for i, t in enumerate(titles) if not t]
    if with_title:
      enc = self.hf([titles[i] for i in with_title], [texts[i] for i in with_title],
                    truncation="longest_first", max_length=max_length)["input_ids"]
      for i, e in zip(with_title, enc):
        seqs[i] = e
    if without:
      enc = self.hf([texts[i] for i in without], truncation=True,
                    max_length=max_length)["input_ids"]
      for i, e in zip(without, enc):
        seqs[i] = e
    return self._pad(seqs, max_length if pad_to_max else None, pad_multiple)
