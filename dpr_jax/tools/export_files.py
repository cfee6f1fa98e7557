"""What every export format writes the same way: the tokenizer files copied beside the weights,
safetensors in PyTorch layout, and files readable by everyone. Shared by `tools/export.py` (DPR
classes) and `tools/st_export.py` (sentence-transformers folders)."""
from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json")


class ExportError(ValueError):
  pass


def check_tokenizer(tokenizer_dir, why: str = "") -> list[str]:
  """The tokenizer files present in `tokenizer_dir`; an `ExportError` when there are none."""
  found = [f for f in TOKENIZER_FILES if (Path(tokenizer_dir or "") / f).is_file()]
  if not found:
    raise ExportError(f"{tokenizer_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES)})"
                      + (f"; {why}" if why else ""))
  return found


def copy_tokenizer(tokenizer_dir, d: Path) -> None:
  """The tokenizer files of `tokenizer_dir` (None: none to copy) into `d`."""
  if tokenizer_dir is None:
    return
  for f in check_tokenizer(tokenizer_dir):
    shutil.copy(Path(tokenizer_dir) / f, Path(d) / f)


def save_tensors(tensors: dict, path: Path) -> None:
  """numpy arrays -> a safetensors file that PyTorch loaders read (`format: pt`)."""
  from safetensors.numpy import save_file
  save_file(tensors, str(path), metadata={"format": "pt"})


def world_readable(d: Path) -> None:
  """Mode 0644 for every file written (safetensors and copied files keep stricter modes): a
  shared export is readable by everyone."""
  for f in Path(d).iterdir():
    if f.is_file():
      f.chmod(0o644)
