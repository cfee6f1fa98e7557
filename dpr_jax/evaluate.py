"""`python -m dpr_jax.evaluate` runs `dpr_jax.retrieval.evaluate` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "evaluate")
