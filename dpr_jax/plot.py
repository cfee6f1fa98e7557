"""`python -m dpr_jax.plot` runs `dpr_jax.tools.plot` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "plot")
