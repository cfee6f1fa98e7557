"""`python -m dpr_jax.recipe`: runs `dpr_jax.tools.recipe` (`dpr_jax.cli.recipe`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.recipe())
