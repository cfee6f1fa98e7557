"""`python -m dpr_jax.reader_train`: runs `dpr_jax.reader.train` (`dpr_jax.cli.reader_train`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.reader_train())
