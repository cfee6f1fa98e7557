"""Train an extractive reader on the shared training harness (`dpr_jax.reader.train`).

  python -m dpr_jax.reader_train --config configs/reader_squad.py --workdir runs/reader

Training data: a retrieval results file on training questions (`data.train_results`); validation:
EM / F1 of the predicted answer over the top `eval.top_k` passages of `data.dev_results`. The
best checkpoint (by EM) is kept in `best/`.
"""
import json

from dpr_jax import cli


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.reader_train", __doc__)
  ap.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl")
  a, config = cli.parse_with_config(ap, argv)
  from dpr_jax.reader.train import train
  print(json.dumps(train(config, a.workdir)))
