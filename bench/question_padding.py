"""Question-side padding of a global batch of real questions: tokens padded / tokens fed, with
the whole batch padded to one bucket and with question groups (`data.question_groups`,
`dpr_jax.data.buckets.group_questions`).

  python bench/question_padding.py --batch 128 --batches 40

Questions: random SQuAD training questions (`train.qas.jsonl.gz`), MiniLM's uncased WordPiece
(bert-base-uncased's vocabulary), at most 256 tokens, as `configs/nq.py` tokenises them.
"""
import argparse
import gzip
import json

import numpy as np

from dpr_jax.data import buckets, resources
from dpr_jax.models.tokenization import Tokenizer


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--batches", type=int, default=40)
  ap.add_argument("--settings", default="1:32,1:8,2:8,2:16,4:8",
                  help="comma-separated GROUPS:MULTIPLE")
  a = ap.parse_args()
  tok = Tokenizer(resources.minilm_path())
  with gzip.open(resources.squad_dir() / "train.qas.jsonl.gz", "rt") as f:
    qs = [json.loads(line)["question"] for line in f]
  rng = np.random.default_rng(0)
  sel = rng.choice(len(qs), a.batch * a.batches, replace=False)
  t = tok.questions([qs[i] for i in sel], max_length=256, pad_to_max=False, pad_multiple=1)
  ids, mask = t["input_ids"], t["attention_mask"]
  print(f"{len(sel)} questions: mean {mask.sum(1).mean():.1f} tokens, max {mask.sum(1).max()}")
  for setting in a.settings.split(","):
    groups, multiple = (int(x) for x in setting.split(":"))
    real = fed = 0
    for s in range(0, len(sel), a.batch):
      m = mask[s:s + a.batch]
      b = {"q_ids": ids[s:s + a.batch], "q_mask": m,
           "p_ids": np.zeros((len(m), 1), np.int32), "p_mask": np.ones((len(m), 1), np.int32)}
      for _, gm in buckets.question_groups(buckets.group_questions(b, groups, 1, multiple, 256)):
        real += int(gm.sum())
        fed += gm.size
    print(json.dumps({"bench": "question_padding", "batch": a.batch, "question_groups": groups,
                      "bucket_multiple": multiple, "padding": round(1 - real / fed, 3)}))


if __name__ == "__main__":
  main()
