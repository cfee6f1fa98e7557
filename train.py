"""Train a DPR dual encoder.

  python train.py --config configs/nq.py --workdir runs/nq [--config.optim.lr=1e-5 ...]

Re-running the same command on the same workdir resumes from its latest checkpoint.
Several processes: add --coordinator HOST:PORT --num_processes N --process_id I (or set
DPR_JAX_DISTRIBUTED=1 where jax.distributed auto-detects the cluster).
"""
import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dpr_jax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (configs/*.py or a bare name)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl, config.json",
                               required=True)
_COORD = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-process)")
_NPROC = flags.DEFINE_integer("num_processes", None, "number of processes (multi-process)")
_PID = flags.DEFINE_integer("process_id", None, "this process's index (multi-process)")


def main(argv):
  del argv
  # Orbax logs every save step at INFO through absl; keep ours at INFO and theirs at WARNING.
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("dpr_jax").setLevel(logging.INFO)
  config_lib.init_distributed(_COORD.value, _NPROC.value, _PID.value)
  from dpr_jax.training import loop as train_lib
  train_lib.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  from dpr_jax import cpu_malloc
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  flags.mark_flags_as_required(["config"])
  app.run(main, argv=config_lib.resolve_config_arg(sys.argv))
