"""`python -m dpr_jax.mine` runs `dpr_jax.retrieval.mine` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "mine")
