"""`python -m dpr_jax.export` runs `dpr_jax.tools.export` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "export")
