"""Reading and writing the tools' files so that bad input names its file and line.

`open_text` reads UTF-8 text, plain or gzip, and turns a decoding error or a truncated gzip
stream into a `DataError` naming the file and line; `read_json` does the same for a whole JSON
document; `atomic_write` writes a file under a temporary name and renames it when complete, so an
output file exists only whole and an earlier one survives a failed run.
"""
from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import os
import zlib
from pathlib import Path


class DataError(ValueError):
  """Bad input data; the message names the file and the line or record."""


def check_file(path, what: str = "a file") -> Path:
  """`path` as a Path; FileNotFoundError naming it (and `what` it should be) if it is no file."""
  p = Path(path)
  if not p.is_file():
    raise FileNotFoundError(f"{p}: expected {what}, found " +
                            ("a directory" if p.is_dir() else "no such file"))
  return p


class TextFile:
  """A UTF-8 text file (`.gz`: gzip) read by lines (`for line in f`) or chunks (`f.read(n)`).
  Decoding errors and truncated or corrupt gzip data raise `DataError` with the line number."""

  def __init__(self, path):
    self.path = check_file(path)
    self._raw = gzip.open(self.path, "rb") if self.path.suffix == ".gz" else open(self.path, "rb")
    self.seek(0)

  def seek(self, pos: int):
    if pos != 0:
      raise ValueError("TextFile can only seek to 0")
    self._raw.seek(0)
    self._dec, self.line = codecs.getincrementaldecoder("utf-8")(), 0

  def _bytes(self, read):
    try:
      return read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
      raise DataError(f"{self.path}: line {self.line + 1}: expected a complete gzip stream, "
                      f"found truncated or corrupt data ({e})") from e

  def _text(self, raw: bytes, final: bool) -> str:
    try:
      return self._dec.decode(raw, final)
    except UnicodeDecodeError as e:
      line = self.line + e.object[:e.start].count(b"\n") + 1
      raise DataError(f"{self.path}: line {line}: expected UTF-8 text, found the byte "
                      f"{e.object[e.start:e.start + 1]!r}") from e

  def __iter__(self):
    while raw := self._bytes(self._raw.readline):
      text = self._text(raw, False)
      self.line += 1
      yield text
    self._text(b"", True)

  def read(self, n: int = -1) -> str:
    raw = self._bytes(lambda: self._raw.read(n))
    text = self._text(raw, not raw or n < 0)
    self.line += raw.count(b"\n")
    return text

  def close(self):
    self._raw.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_text(path) -> TextFile:
  return TextFile(path)


def read_json(path, what: str = "JSON"):
  """A whole JSON document; a `DataError` naming file and line if it is empty or not JSON."""
  with open_text(path) as f:
    text = f.read()
  if not text.strip():
    raise DataError(f"{path}: expected {what}, found an empty file")
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}: line {e.lineno}: expected {what}, found invalid JSON "
                    f"({e.msg})") from e


@contextlib.contextmanager
def atomic_write(path, mode: str = "w"):
  """Open `path` for writing under a temporary name; renamed to `path` when the block ends
  without an error, removed otherwise. `.gz`: gzip-compressed. OSError (a full disk) names
  `path`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  binary = "b" in mode
  try:
    if path.suffix == ".gz":
      f = gzip.open(tmp, "wb" if binary else "wt", **({} if binary else {"encoding": "utf-8"}))
    else:
      f = open(tmp, mode, **({} if binary else {"encoding": "utf-8"}))
    with f:
      yield f
    os.replace(tmp, path)
  except OSError as e:
    tmp.unlink(missing_ok=True)
    raise OSError(e.errno, f"could not write ({e.strerror or e})", str(path)) from e
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json(path, obj, indent: int | None = 1):
  with atomic_write(path) as f:
    json.dump(obj, f, ensure_ascii=False, indent=indent)
