"""`python -m dpr_jax.mine`: runs `dpr_jax.retrieval.mine` (`dpr_jax.cli.mine`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.mine())
