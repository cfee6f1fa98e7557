"""`python -m dpr_jax.prepare` runs `dpr_jax.tools.prepare` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "prepare")
