"""`python -m dpr_jax.serve` runs `dpr_jax.tools.serve` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "serve")
