"""What a dense passage encoder sees at each length cut: the fraction of corpus passages longer
than the cut (`[CLS] title [SEP] text [SEP]`, as the passage encoder reads them) and the fraction
of questions whose answer lies wholly past the cut in their gold passage.

  python bench/passage_lengths.py --passages ../shared/data/squad/paragraphs.tsv.gz \\
      --data data/squad/dev.jsonl.gz --out bench/results/passage_lengths.json

`--data`: a DPR training-format file (its first positive is the gold passage); answers are
matched on word pieces, as the reader labels them. MiniLM's uncased WordPiece.
"""
import argparse
import json

import numpy as np
from tqdm import tqdm

from dpr_jax.data import examples
from dpr_jax.data.corpus import read_corpus
from dpr_jax.data.resources import minilm_path
from dpr_jax.models.tokenization import Tokenizer

CUTS = (128, 160, 192, 256, 320, 384, 512)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--passages", required=True)
  ap.add_argument("--data", required=True)
  ap.add_argument("--out")
  a = ap.parse_args()
  hf = Tokenizer(minilm_path()).hf
  pieces = lambda t: hf(t, add_special_tokens=False)["input_ids"]
  corpus = read_corpus(a.passages)
  lengths = np.array([len(pieces(ti)) + len(pieces(t)) + 3 for ti, t in
                      tqdm(zip(corpus.titles, corpus.texts), total=len(corpus.ids),
                           desc="passages", mininterval=5)])
  ends, missing = [], 0
  ds = examples.load_dataset(a.data, 0)
  for ex in tqdm(ds.examples, desc="answers", mininterval=5):
    p = ex.positives[0]
    text, head = pieces(p.text), len(pieces(p.title)) + 2
    best = None
    for ans in ex.answers:
      ap_ = pieces(ans)
      for i in range(len(text) - len(ap_) + 1) if ap_ else ():
        if text[i:i + len(ap_)] == ap_:
          best = min(best or 10 ** 9, head + i + len(ap_) + 1)
          break
    if best is None:
      missing += 1
    else:
      ends.append(best)
  ends = np.array(ends)
  rows = [{"cut": c, "passages_longer_pct": round(100 * float((lengths > c).mean()), 2),
           "answers_past_cut_pct": round(100 * float((ends > c).sum()) / len(ds.examples), 2)}
          for c in CUTS]
  out = {"passages": len(lengths), "questions": len(ds.examples),
         "answer_not_in_gold_pieces": missing, "length_mean": round(float(lengths.mean()), 1),
         "length_pct": {q: int(np.percentile(lengths, q)) for q in (50, 90, 99)}, "rows": rows}
  print(json.dumps(out))
  if a.out:
    with open(a.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
