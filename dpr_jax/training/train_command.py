"""Train a DPR dual encoder.

  python train.py --config configs/nq.py --workdir runs/nq [--config.optim.lr=1e-5 ...]

Re-running the same command on the same workdir resumes from its latest checkpoint.
Several processes: add --coordinator HOST:PORT --num_processes N --process_id I (or set
DPR_JAX_DISTRIBUTED=1 where jax.distributed auto-detects the cluster).
"""
from dpr_jax import cli


def main(argv=None):
  ap = cli.Parser("python train.py", __doc__)
  ap.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, config.json")
  cli.add_distributed_args(ap)
  a, config = cli.parse_with_config(ap, argv)
  cli.init_distributed(a)
  from dpr_jax.training import loop, summary
  loop.train(config, a.workdir)
  summary.print_before_after(a.workdir)
