"""`python -m dpr_jax.recipe` runs `dpr_jax.tools.recipe` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "recipe")
