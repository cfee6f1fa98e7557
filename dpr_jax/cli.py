"""The command-line layer shared by every tool: one argparse parser class, the shared flag groups,
config loading, and `run`, the wrapper that every entry point goes through.

`run(main, argv)` re-executes the process with tuned malloc settings when asked
(`dpr_jax.cpu_malloc`, command line only), keeps JAX off a TPU backend where there is no TPU
(`dpr_jax.platforms`), sets up logging, calls `main(argv)`, and turns a domain
error (bad data, a missing or corrupt file, a bad argument or config value) into one line on
stderr, `error: FILE: what was expected, what was found`, and exit status 2. `--debug` (or
DPR_JAX_DEBUG=1) prints the traceback as well. Entry points (`[project.scripts]` in
pyproject.toml) are the functions at the end of this module; each takes an optional argv and
returns the exit status, so tests run them in-process.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from dpr_jax import config_lib, platforms

# Errors that describe bad input rather than a bug: ValueError covers DataError,
# CheckpointError, ExportError, ReaderDataError, IndexMismatch and ConfigError; OSError covers
# missing files and full disks; FloatingPointError a diverged training run.
DOMAIN_ERRORS = (ValueError, OSError, FloatingPointError)


class UsageError(ValueError):
  """A bad command-line argument."""


class Parser(argparse.ArgumentParser):
  """argparse with the module docstring as help and errors raised (as `UsageError`) instead of
  printed, so that `run` reports them like any other error."""

  def __init__(self, prog: str, doc: str | None, **kw):
    super().__init__(prog=prog, description=doc,
                     formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
    self.add_argument("--debug", action="store_true",
                      help="show the traceback of an error (or set DPR_JAX_DEBUG=1)")

  def error(self, message):
    raise UsageError(f"{self.prog}: {message}")


def _checked(kind, low, name):
  def parse(text):
    try:
      v = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected {name}, found {text!r}") from None
    if v < low:
      raise argparse.ArgumentTypeError(f"expected {name}, found {text!r}")
    return v
  return parse


positive_int = _checked(int, 1, "an integer >= 1")
on_off = argparse.BooleanOptionalAction  # --flag / --no-flag
non_negative_int = _checked(int, 0, "an integer >= 0")


def recall(text: str) -> float:
  """A recall target in (0, 1]."""
  try:
    v = float(text)
  except ValueError:
    v = -1.0
  if not 0.0 < v <= 1.0:
    raise argparse.ArgumentTypeError(f"expected a number in (0, 1], found {text!r}")
  return v


def int_list(text: str) -> list[int]:
  """`1,5,20` -> [1, 5, 20], each >= 1."""
  items = [t.strip() for t in text.split(",") if t.strip()]
  if not items:
    raise argparse.ArgumentTypeError(f"expected integers >= 1 separated by commas, "
                                     f"found {text!r}")
  return [positive_int(t) for t in items]


def add_model_args(ap, required: bool = True):
  """Naming a model (see `training.loading.load_model`)."""
  g = ap.add_argument_group("model")
  g.add_argument("--model", required=required,
                 help="training workdir, exported pair, Hugging Face BERT/DPR directory or hub "
                 "name, or 'minilm'")
  g.add_argument("--which", choices=["best", "latest"], default="best",
                 help="checkpoint of a training workdir")
  g.add_argument("--pooling", choices=["cls", "mean"], default="cls",
                 help="for a plain HF BERT directory (a workdir records its own)")
  g.add_argument("--normalize", choices=["auto", "on", "off"], default="auto",
                 help="unit-length embeddings for a plain HF directory (auto: on for a "
                 "sentence-transformers model with a Normalize module)")


def model_kwargs(a) -> dict:
  """`load_model` keyword arguments from the flags of `add_model_args`."""
  return {"which": a.which, "pooling": a.pooling,
          "normalize": {"auto": None, "on": True, "off": False}[a.normalize]}


def add_passages_arg(ap, required: bool = True):
  ap.add_argument_group("passages").add_argument(
      "--passages", required=required,
      help="the corpus: a TSV id<TAB>text<TAB>title, a BEIR folder or corpus.jsonl, MS MARCO's "
      "collection.tsv or its folder (.gz accepted)")


def add_questions_args(ap, required: bool = True):
  g = ap.add_argument_group("questions")
  g.add_argument("--questions", required=required,
                 help="DPR .qa.csv or JSON-lines {question, answers}, a BEIR folder (split "
                 "test) or its qrels/SPLIT.tsv or queries.jsonl, MS MARCO's queries.*.tsv or "
                 "qrels.*.tsv (.gz accepted)")
  g.add_argument("--limit", type=positive_int, default=None, help="first N questions only")
  g.add_argument("--sample", type=positive_int, default=None,
                 help="N questions drawn at random (seed 0), in file order")


def add_index_args(ap):
  g = ap.add_argument_group("index")
  g.add_argument("--embeddings", help="encode.py output directory")
  g.add_argument("--index", choices=list(config_lib.ENUMS["index.kind"]), default="flat",
                 help="FAISS flat / hnsw / ivfpq on this host, or mesh: exact search with the "
                 "embeddings sharded over every device")
  g.add_argument("--mesh_recall", type=recall, default=1.0,
                 help="--index mesh: 1 = exact top-k; below 1, lax.approx_max_k's recall target")


def add_distributed_args(ap):
  g = ap.add_argument_group("distributed (several processes)")
  g.add_argument("--coordinator", help="host:port of process 0")
  g.add_argument("--num_processes", type=positive_int, help="number of processes")
  g.add_argument("--process_id", type=non_negative_int, help="this process's index")


def init_distributed(a):
  if a.coordinator and (a.num_processes is None or a.process_id is None):
    raise UsageError("--coordinator needs --num_processes and --process_id")
  if a.process_id is not None and a.num_processes is not None and a.process_id >= a.num_processes:
    raise UsageError(f"--process_id: expected < --num_processes {a.num_processes}, "
                     f"found {a.process_id}")
  from dpr_jax.training import sharding
  sharding.start_processes(a.coordinator, a.num_processes, a.process_id)


def parse_with_config(ap, argv, required: bool = True):
  """Parses `--config FILE[:ARG]` and `--config.a.b=value` overrides besides `ap`'s flags;
  -> (args, locked and validated ConfigDict)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, overrides = config_lib.split_overrides(argv)
  ap.add_argument("--config", required=required,
                  help="config file: a path or a name in configs/ (nq, demo.py, ...); fields "
                  "are overridden with --config.FIELD=VALUE (e.g. --config.optim.lr=1e-5)")
  a = ap.parse_args(rest)
  if a.config is None:
    if overrides:
      raise UsageError(f"--config.{overrides[0][0]} needs --config FILE")
    return a, None
  return a, config_lib.load(a.config, overrides)


def message(e: BaseException) -> str:
  """One line: the file (when an OSError names one) and what went wrong."""
  if isinstance(e, OSError) and e.filename is not None and e.strerror:
    text = f"{e.filename}: {e.strerror}"
  else:
    text = str(e) or type(e).__name__
  return " ".join(text.split())


class _StderrHandler(logging.StreamHandler):
  """Writes to the current `sys.stderr` (which tests and notebooks replace)."""

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, value):
    pass


def setup_logging():
  """Our INFO messages on stderr; other libraries' warnings only (Orbax logs every save at INFO
  through absl)."""
  log = logging.getLogger("dpr_jax")
  if not log.handlers:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.propagate = False
  log.setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.WARNING)


def _close_progress_bars():
  """Ends any tqdm bar left open by the error, so that the error starts its own line."""
  from tqdm import tqdm
  for bar in list(getattr(tqdm, "_instances", ())):
    bar.close()


def run(main, argv=None) -> int:
  """Runs `main(argv)` as a command; -> exit status (0, or 2 after a domain error)."""
  if argv is None:
    from dpr_jax import cpu_malloc
    cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  platforms.skip_tpu_without_hardware()  # libtpu on a host with no TPU: no TPU backend
  args = list(sys.argv[1:] if argv is None else argv)
  debug = "--debug" in args or os.environ.get("DPR_JAX_DEBUG") == "1"
  setup_logging()
  try:
    status = main(args)
  except DOMAIN_ERRORS as e:
    _close_progress_bars()
    if debug:
      traceback.print_exc()
    sys.stdout.flush()
    print(f"error: {message(e)}", file=sys.stderr, flush=True)
    return 2
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    return 130
  return int(status or 0)


# Every command: its name -> the module whose `main(argv)` it runs. A command NAME is run as
# `python -m dpr_jax NAME`, as `python -m dpr_jax.NAME` (dpr_jax/NAME.py, an alias made by
# `alias`) and as the console script `dpr-NAME` (`NAME` below, `[project.scripts]`).
TOOLS = {
    "train": "dpr_jax.training.train_command",
    "encode": "dpr_jax.retrieval.encode_command",
    "retrieve": "dpr_jax.retrieval.retrieve",
    "evaluate": "dpr_jax.retrieval.evaluate",
    "mine": "dpr_jax.retrieval.mine",
    "answer": "dpr_jax.reader.answer",
    "reader_train": "dpr_jax.reader.train_command",
    "prepare": "dpr_jax.tools.prepare",
    "export": "dpr_jax.tools.export",
    "scaling": "dpr_jax.tools.scaling",
    "download": "dpr_jax.data.download",
    "plot": "dpr_jax.tools.plot",
    "serve": "dpr_jax.tools.serve",
    "recipe": "dpr_jax.tools.recipe",
    "compile": "dpr_jax.tools.compile",
}


def tool_main(name: str):
  """The `main(argv)` of command `name` (its module is imported on the call)."""
  def main(argv=None):
    return importlib.import_module(TOOLS[name]).main(argv)
  main.__doc__ = f"`{TOOLS[name]}.main`."
  return main


def _tool(name: str):
  def entry(argv=None) -> int:
    return run(tool_main(name), argv)
  entry.__doc__ = f"The `{name}` command (`{TOOLS[name]}`); -> exit status."
  return entry


def alias(module_name: str, name: str):
  """The body of dpr_jax/NAME.py: run as `python -m dpr_jax.NAME`, it runs the command `name`;
  imported, it gives that command's `main(argv)`."""
  if module_name == "__main__":
    sys.exit(_tool(name)())
  return tool_main(name)


def dispatch(args: list[str]) -> int:
  """`python -m dpr_jax NAME [flags]` (see dpr_jax/__main__.py)."""
  if not args or args[0] in ("-h", "--help"):
    print("usage: python -m dpr_jax COMMAND [flags]   (COMMAND --help: its flags)\n\ncommands:\n"
          + "".join(f"  {n:<14} {m}\n" for n, m in TOOLS.items()), end="",
          file=sys.stdout if args else sys.stderr)
    return 0 if args else 2
  if args[0] not in TOOLS:
    print(f"error: python -m dpr_jax: expected a command ({', '.join(TOOLS)}), found "
          f"{args[0]!r}", file=sys.stderr)
    return 2
  sys.argv = [f"python -m dpr_jax {args[0]}", *args[1:]]
  return _tool(args[0])()


train = _tool("train")
encode = _tool("encode")
retrieve = _tool("retrieve")
evaluate = _tool("evaluate")
mine = _tool("mine")
answer = _tool("answer")
reader_train = _tool("reader_train")
prepare = _tool("prepare")
export = _tool("export")
scaling = _tool("scaling")
download = _tool("download")
plot = _tool("plot")
serve = _tool("serve")
recipe = _tool("recipe")
compile = _tool("compile")  # noqa: A001  (the command's name)
