"""`python -m dpr_jax.compile` runs `dpr_jax.tools.compile` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "compile")
