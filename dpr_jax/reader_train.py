"""`python -m dpr_jax.reader_train` runs `dpr_jax.reader.train_command` (see `dpr_jax.cli.TOOLS`)."""
from dpr_jax import cli

main = cli.alias(__name__, "reader_train")
