"""`python -m dpr_jax.answer`: runs `dpr_jax.reader.answer` (`dpr_jax.cli.answer`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.answer())
