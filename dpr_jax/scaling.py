"""`python -m dpr_jax.scaling` runs `dpr_jax.tools.scaling` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "scaling")
