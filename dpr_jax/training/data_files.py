"""The training files a config names, shared by the retriever's and the reader's training."""
from __future__ import annotations

from pathlib import Path


def prepared_files(dc, workdir: Path, required: bool = True) -> tuple[list[str], str]:
  """Training files and dev file named by the config; runs `prepare squad` for the demo."""
  train_files = [f for f in dc.train_files.split(",") if f]
  dev_file = dc.dev_file
  if dc.prepare:
    out = Path(dc.prepare_dir or workdir / "data")
    if not (out / "train.jsonl.gz").is_file():
      import jax
      from jax.experimental import multihost_utils
      from dpr_jax.tools.prepare import prepare_squad
      if jax.process_index() == 0:
        prepare_squad(out, **dict(dc.prepare_args))
      multihost_utils.sync_global_devices("prepare")
    train_files = train_files or [str(out / "train.jsonl.gz")]
    dev_file = dev_file or str(out / "dev.jsonl.gz")
  if not train_files and required:
    raise ValueError("no training data: set --config.data.train_files=FILE[,FILE...] "
                     "(or the environment variable the config documents)")
  return train_files, dev_file
