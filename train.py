"""Train a DPR dual encoder: `python train.py --config configs/nq.py --workdir runs/nq`.

The command is `dpr_jax.train` (`dpr-train` once installed); `--help` lists its flags.
"""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.train())
