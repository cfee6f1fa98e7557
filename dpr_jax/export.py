"""`python -m dpr_jax.export`: runs `dpr_jax.tools.export` (`dpr_jax.cli.export`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.export())
