"""Configs: load a `configs/*.py` file, apply `--config.a.b=value` overrides, validate.

`load(spec, overrides)`: `spec` is a path or a bare name of `configs/` (`nq`, `nq.py`), with an
optional `:arg` passed to `get_config(arg)`. Each override names an existing field and is
converted to that field's type; a misspelt field, a value of the wrong type, an enum value
outside its choices or a size <= 0 raises `ConfigError` naming the config file and the field.
"""
from __future__ import annotations

import ast
import difflib
import importlib.resources
import importlib.util
import os
import sys
from pathlib import Path

import ml_collections

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

# Fields with a closed set of values, checked wherever a config has them.
ENUMS = {
    "model.dtype": ("float32", "bfloat16", "fp32", "bf16"),
    "model.pooling": ("cls", "mean"),
    "model.attention": ("auto", "xla", "cudnn"),
    "loss.similarity": ("dot", "cosine"),
    "index.kind": ("flat", "hnsw", "ivfpq", "mesh"),
}
# Integer fields that must be >= 1 wherever a config has them (0 has no meaning).
POSITIVE = ("train.global_batch", "train.batch_questions", "train.log_every",
            "train.save_every", "train.keep_checkpoints", "train.fsdp", "data.question_max_length",
            "data.passage_max_length", "data.max_length", "data.passages_per_question",
            "data.top", "eval.batch_size", "eval.batch_questions", "eval.top_k",
            "eval.max_answer_length", "data.question_groups", "recipe.encode_max_length",
            "recipe.encode_batch_size", "recipe.mine_questions", "recipe.mine_depth",
            "recipe.round2_steps", "recipe.window_stride")
# Fields that must be >= 0 (0 means "off" or "all").
NON_NEGATIVE = ("train.epochs", "train.max_steps", "train.grad_cache_chunk", "eval.every",
                "eval.max_batches", "eval.max_questions", "data.num_hard_negatives",
                "data.keep_negatives", "data.max_train_examples", "data.max_train_questions",
                "optim.warmup_steps", "data.question_bucket_multiple", "recipe.mined_negatives",
                "recipe.round2_hard_negatives", "recipe.round2_warmup_steps",
                "recipe.window_words")


class ConfigError(ValueError):
  """A config file, override or value that cannot be used; the message names the file."""


def resolve_path(spec: str) -> tuple[Path, str | None]:
  """`nq` / `nq.py` / `configs/nq.py` / a path, with an optional `:arg` -> (file, arg)."""
  path, sep, arg = spec.partition(":")
  p = Path(path)
  if not p.exists():
    name = path if path.endswith(".py") else path + ".py"
    found = find_config(Path(name).name)
    if os.sep not in name.removeprefix("configs/") and found:
      p = found
  if not p.is_file():
    raise ConfigError(f"{path}: expected a config file (a path or a name in {CONFIGS}), "
                      "found no such file")
  return p, (arg if sep else None)


def _import(path: Path):
  root = str(path.resolve().parent.parent)  # so that `from dpr_jax.configs import base` works
  if root not in sys.path:
    sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location(f"_dpr_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path}: expected a function get_config(), found none")
  return module


def _convert(old, value: str, where: str):
  if isinstance(old, bool):
    if value.lower() in ("true", "1", "yes"):
      return True
    if value.lower() in ("false", "0", "no"):
      return False
    raise ConfigError(f"{where}: expected true or false, found {value!r}")
  try:
    if isinstance(old, int):
      return int(value)
    if isinstance(old, float):
      return float(value)
    if isinstance(old, (tuple, list)):
      return type(old)(ast.literal_eval(value))
  except (ValueError, SyntaxError, TypeError):
    raise ConfigError(f"{where}: expected a value of type {type(old).__name__}, found "
                      f"{value!r}") from None
  if old is None or isinstance(old, str):
    return value
  raise ConfigError(f"{where}: a {type(old).__name__} field cannot be set from the command line")


def override(config, name: str, value: str, source) -> None:
  """config.<name> = value, converted to the field's type."""
  node, parts = config, name.split(".")
  for i, key in enumerate(parts):
    fields = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    if key not in fields:
      near = difflib.get_close_matches(key, fields, n=1)
      hint = f" (did you mean {'.'.join(parts[:i] + near)}?)" if near else ""
      raise ConfigError(f"{source}: --config.{name}: expected a field of the config, found no "
                        f"field {'.'.join(parts[:i + 1])!r}{hint}")
    if i < len(parts) - 1:
      node = node[key]
  old = node[parts[-1]]
  if isinstance(old, ml_collections.ConfigDict):
    raise ConfigError(f"{source}: --config.{name}: expected a leaf field, found a group")
  with node.ignore_type():
    node[parts[-1]] = _convert(old, value, f"{source}: --config.{name}")


def _get(config, name: str):
  node = config
  for key in name.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      return None
    node = node[key]
  return node


def validate(config, source="config") -> None:
  """Enum fields take one of their values; sizes are positive."""
  for name, choices in ENUMS.items():
    v = _get(config, name)
    if v is not None and v not in choices:
      raise ConfigError(f"{source}: {name}: expected one of {', '.join(choices)}, found {v!r}")
  for names, low in ((POSITIVE, 1), (NON_NEGATIVE, 0)):
    for name in names:
      v = _get(config, name)
      if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
        raise ConfigError(f"{source}: {name}: expected an integer >= {low}, found {v!r}")


def load(spec: str, overrides: list[tuple[str, str]] = ()):
  """The validated, locked config of `spec` with `overrides` ([(field, value)]) applied."""
  path, arg = resolve_path(spec)
  module = _import(path)
  config = module.get_config() if arg is None else module.get_config(arg)
  for name, value in overrides:
    override(config, name, value, path)
  validate(config, path)
  config.lock()
  return config


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """argv -> (argv without `--config.a.b=v` / `--config.a.b v`, [(a.b, v)])."""
  rest, found, i = [], [], 0
  while i < len(argv):
    a = argv[i]
    if a.startswith("--config."):
      name, eq, value = a[len("--config."):].partition("=")
      if not eq:
        if i + 1 >= len(argv):
          raise ConfigError(f"--config.{name}: expected a value, found none")
        value, i = argv[i + 1], i + 1
      found.append((name, value))
    else:
      rest.append(a)
    i += 1
  return rest, found
