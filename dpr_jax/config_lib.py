"""Command-line plumbing shared by train.py and the other tools."""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

PACKAGED_CONFIGS = "dpr_jax.configs"   # the shipped configs, installed with the package
REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"   # a checkout's configs/


def find_config(name: str) -> Path | None:
  """A shipped config file by name (`nq.py`): from the package `dpr_jax.configs` (found
  through importlib.resources, so a `pip install .` has them), else from a checkout's
  `configs/`; None when neither has it."""
  try:
    dirs = [Path(str(importlib.resources.files(PACKAGED_CONFIGS)))]
  except ModuleNotFoundError:
    dirs = []
  for d in dirs + [REPO_CONFIGS]:
    if (d / name).is_file():
      return d / name
  return None


CONFIGS = (find_config("base.py") or REPO_CONFIGS / "base.py").parent


def resolve_config_arg(argv: list[str]) -> list[str]:
  """`--config nq.py` / `--config=nq` -> `--config=<repo>/configs/nq.py` when the bare name is
  not a path that exists (a `:override` suffix is kept)."""
  out, i = [], 0
  while i < len(argv):
    a = argv[i]
    if a == "--config" and i + 1 < len(argv):
      a, i = "--config=" + argv[i + 1], i + 1
    if a.startswith("--config="):
      value = a.split("=", 1)[1]
      path, _, rest = value.partition(":")
      if not os.path.exists(path):
        name = path if path.endswith(".py") else path + ".py"
        found = find_config(Path(name).name)
        if found and os.sep not in name.removeprefix("configs/"):
          path = str(found)
      a = "--config=" + path + (":" + rest if rest else "")
    out.append(a)
    i += 1
  return out


def init_distributed(coordinator: str | None, num_processes: int | None,
                     process_id: int | None):
  """`jax.distributed.initialize` when launched as several processes (flags, or the
  environment of a TPU pod / SLURM / Open MPI job when DPR_JAX_DISTRIBUTED=1)."""
  import jax
  if coordinator:
    # Collectives between CPU processes (localhost tests, CPU clusters); ignored on GPU/TPU.
    # Asking for the backend here would initialise it too early, so set it unconditionally.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
  elif os.environ.get("DPR_JAX_DISTRIBUTED") == "1":
    jax.distributed.initialize()


def add_model_args(ap, required: bool = True):
  """The flags every inference tool takes to name a model (see `checkpoint.load_model`)."""
  ap.add_argument("--model", required=required,
                  help="training workdir, Hugging Face BERT/DPR directory or hub name, or 'minilm'")
  ap.add_argument("--which", choices=["best", "latest"], default="best",
                  help="checkpoint of a training workdir")
  ap.add_argument("--pooling", choices=["cls", "mean"], default="cls",
                  help="for a plain HF BERT directory (a workdir records its own)")
  ap.add_argument("--normalize", choices=["auto", "on", "off"], default="auto",
                  help="unit-length embeddings for a plain HF directory (auto: on for a "
                  "sentence-transformers model with a Normalize module)")


def model_kwargs(args) -> dict:
  """`load_model` keyword arguments from the flags of `add_model_args`."""
  return {"which": args.which, "pooling": args.pooling,
          "normalize": {"auto": None, "on": True, "off": False}[args.normalize]}
