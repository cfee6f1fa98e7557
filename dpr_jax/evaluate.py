"""`python -m dpr_jax.evaluate`: runs `dpr_jax.retrieval.evaluate` (`dpr_jax.cli.evaluate`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.evaluate())
