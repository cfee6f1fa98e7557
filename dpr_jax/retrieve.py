"""`python -m dpr_jax.retrieve`: runs `dpr_jax.retrieval.retrieve` (`dpr_jax.cli.retrieve`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.retrieve())
