"""`python -m dpr_jax.download` runs `dpr_jax.data.download` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "download")
