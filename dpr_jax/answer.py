"""`python -m dpr_jax.answer` runs `dpr_jax.reader.answer` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "answer")
