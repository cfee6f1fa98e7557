"""What the reader sees at each length cut: reader input lengths (`[CLS] question [SEP] title
[SEP] text [SEP]`) of questions with their gold paragraph, and the fraction of questions whose
every answer occurrence lies past the cut (so a reader that truncates there cannot answer them).

  python bench/reader_lengths.py --data data/squad/dev.jsonl.gz --out bench/results/reader_lengths.json

`--data`: a DPR training-format file (its first positive is the gold paragraph); answers are
matched on word pieces, as the reader labels them (`dpr_jax.reader.data`).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm

from dpr_jax.data import examples
from dpr_jax.reader.data import ReaderTokenizer
from dpr_jax.training.loading import tokenizer_path

CUTS = (128, 192, 256, 320, 350, 384, 512)


def answer_end(tok: ReaderTokenizer, ex) -> int | None:
  """Reader input length needed to hold the earliest-ending answer occurrence (None: the answer
  is not in the gold paragraph's word pieces)."""
  p = ex.positives[0]
  pieces = tok.pieces(p.text)[0]
  head = len(tok._head(ex.question, p.title))
  best = None
  for a in ex.answers:
    ap = tok.answer_pieces(a)
    for i in range(len(pieces) - len(ap) + 1) if ap else ():
      if pieces[i: i + len(ap)] == ap:
        end = head + i + len(ap) + 1  # + the final [SEP]
        best = end if best is None else min(best, end)
        break
  return best


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data", required=True)
  ap.add_argument("--tokenizer", default="minilm")
  ap.add_argument("--limit", type=int, default=0)
  ap.add_argument("--out")
  a = ap.parse_args(argv)
  tok = ReaderTokenizer(tokenizer_path(a.tokenizer, ""), max_length=100_000, question_max_length=32)
  ds = examples.load_dataset(a.data, 0, a.limit or None)
  lengths, ends, missing = [], [], 0
  for ex in tqdm(ds.examples, desc="tokenise", mininterval=2):
    p = ex.positives[0]
    lengths.append(len(tok._head(ex.question, p.title)) + len(tok.pieces(p.text)[0]) + 1)
    e = answer_end(tok, ex)
    if e is None:
      missing += 1
    else:
      ends.append(e)
  lengths, ends = np.array(lengths), np.array(ends)
  n = len(ds.examples)
  rows = [{"cut": c, "inputs_cut_pct": 100 * float((lengths > c).mean()),
           "answers_past_cut_pct": 100 * float((ends > c).sum()) / n} for c in CUTS]
  out = {"data": a.data, "questions": n, "answer_not_in_gold_pieces": missing,
         "input_length_mean": float(lengths.mean()),
         "input_length_pct": {q: int(np.percentile(lengths, q)) for q in (50, 90, 99)},
         "rows": rows}
  print(f"{n} questions; reader input length mean {lengths.mean():.0f}, median "
        f"{np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}, "
        f"p99 {np.percentile(lengths, 99):.0f}; answer not found in the gold paragraph's pieces: "
        f"{missing}")
  print("cut\tinputs longer (%)\tanswers past the cut (% of questions)")
  for r in rows:
    print(f"{r['cut']}\t{r['inputs_cut_pct']:.1f}\t{r['answers_past_cut_pct']:.2f}")
  if a.out:
    with open(a.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
