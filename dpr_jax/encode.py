"""`python -m dpr_jax.encode` runs `dpr_jax.retrieval.encode_command` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "encode")
