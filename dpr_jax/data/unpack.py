"""Unpacking a downloaded zip (a BEIR dataset) into the folder beside it, whole or not at all.

`scifact.zip` holds `scifact/corpus.jsonl`, ...: it is extracted under a temporary name in the
zip's folder and renamed to `scifact/` when every member is out. A member whose path would land
outside that folder (absolute, or climbing with `..`) is refused, as is a corrupt archive;
macOS's `__MACOSX/` entries are skipped.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from dpr_jax.data.textio import DataError


def _members(z: zipfile.ZipFile, path: Path, top: str) -> list[zipfile.ZipInfo]:
  """The members to extract (macOS's `__MACOSX/` resource forks left out); one outside `top/`
  is an error."""
  keep = []
  for m in z.infolist():
    parts = PurePosixPath(m.filename).parts
    if parts[:1] == ("__MACOSX",) and ".." not in parts:
      continue
    if m.filename.startswith("/") or ".." in parts or not parts or parts[0] != top:
      raise DataError(f"{path}: expected members under {top}/, found {m.filename!r}")
    keep.append(m)
  return keep


def unpack_zip(path) -> Path:
  """Extracts `NAME.zip` (members under `NAME/`) into `NAME/` beside it; -> that folder. A folder
  already there is kept as it is."""
  path = Path(path)
  top = path.name.removesuffix(".zip")
  dest = path.with_name(top)
  if dest.is_dir():
    return dest
  tmp = path.with_name(f".{top}.unpack{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    with zipfile.ZipFile(path) as z:
      for m in _members(z, path, top):
        z.extract(m, tmp)
    os.replace(tmp / top, dest)
  except zipfile.BadZipFile as e:
    raise DataError(f"{path}: expected a zip archive, found a corrupt one ({e})") from e
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return dest
