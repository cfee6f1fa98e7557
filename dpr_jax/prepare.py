"""`python -m dpr_jax.prepare`: runs `dpr_jax.tools.prepare` (`dpr_jax.cli.prepare`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.prepare())
