"""Encode a passage corpus: `python encode.py --model PATH --passages FILE --out DIR`.

The command is `dpr_jax.encode` (`dpr-encode` once installed); `--help` lists its flags.
"""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.encode())
