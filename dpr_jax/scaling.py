"""`python -m dpr_jax.scaling`: runs `dpr_jax.tools.scaling` (`dpr_jax.cli.scaling`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.scaling())
