"""`python -m dpr_jax.plot`: runs `dpr_jax.tools.plot` (`dpr_jax.cli.plot`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.plot())
