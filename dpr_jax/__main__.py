"""`python -m dpr_jax COMMAND [flags]`: runs a command by name (`python -m dpr_jax --help`
lists them; `dpr_jax.cli.TOOLS`)."""
import sys

from dpr_jax import cli

if __name__ == "__main__":
  sys.exit(cli.dispatch(sys.argv[1:]))
