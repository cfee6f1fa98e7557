"""`python -m dpr_jax.retrieve` runs `dpr_jax.retrieval.retrieve` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "retrieve")
