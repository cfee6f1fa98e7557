"""`python -m dpr_jax.download`: runs `dpr_jax.data.download` (`dpr_jax.cli.download`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.download())
