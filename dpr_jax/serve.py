"""`python -m dpr_jax.serve`: runs `dpr_jax.tools.serve` (`dpr_jax.cli.serve`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.serve())
