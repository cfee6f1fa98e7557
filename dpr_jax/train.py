"""`python -m dpr_jax.train` runs `dpr_jax.training.train_command` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "train")
