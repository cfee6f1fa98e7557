"""DPR's two training rounds as one resumable command: BM25 negatives, then the model's own.

  python -m dpr_jax.recipe --config configs/squad.py --workdir runs/squad [--stages ...]

Stages, in order, each under `--workdir` (a re-run skips the stages `recipe.json` marks done,
and a cut stage resumes: training from its latest checkpoint, encoding from its finished parts):

1. `round1`: `train.py` with the config (hard negatives from BM25) -> `round1/`.
2. `encode1`: the corpus with the round-1 model -> `emb1/`.
3. `mine`: the round-1 model retrieves the top `recipe.mine_depth` passages for
   `recipe.mine_questions` training questions (`round1/data/train-split.qas.jsonl.gz`);
   `dpr_jax.mine` keeps the top `recipe.mined_negatives` that are not positives and contain no
   answer, and appends the question's BM25 negatives (`recipe.mix_bm25`) -> `mine/train.jsonl.gz`.
4. `round2`: training continues from round 1's best checkpoint on the mined data, with the
   `recipe.round2_*` settings -> `round2/`.
5. `encode2`: the corpus with the round-2 model -> `emb2/`; with `recipe.window_words` > 0,
   the corpus cut into overlapping windows of that many words (`windows-WORDS-STRIDE.tsv.gz`;
   DPR's 100-word passages), so that every word of a long paragraph is read.
6. `evaluate`: BM25, dense and hybrid (BM25 + dense / temperature, as `retrieve --retriever
   hybrid`) for every encoded round on every held-out split (`dev`, `dev2`, ...), top-k by DPR's
   protocol -> `eval/SPLIT-RETRIEVER.json` (+ `.metrics.json`), summed up in `results.md`.
   Round 2 over windows is scored paragraph by paragraph (`retrieve --paragraphs`: each
   paragraph at its best window's rank). It runs on every re-run, skipping the retrievers it
   has scored (`eval/*.metrics.json`; delete them to score again), so `--stages
   round1,encode1,evaluate` scores round 1 alone and a later run adds round 2.

Every stage is a documented command (`train.py`, `encode.py`, `python -m dpr_jax.retrieve`,
`mine`, `evaluate`) run in this process; the log names each one.
"""
from __future__ import annotations

import copy
import json
import logging
import sys
import time
from pathlib import Path

from dpr_jax import cli

log = logging.getLogger("dpr_jax")
STAGES = ("round1", "encode1", "mine", "round2", "encode2", "evaluate")
FIELDS = ("encode_max_length", "encode_batch_size", "mine_questions", "mine_depth",
          "mined_negatives", "mix_bm25", "round2_steps", "round2_lr", "round2_warmup_steps",
          "round2_hard_negatives", "window_words", "window_stride")


def _free():
  from dpr_jax.training import harness
  # As training's, and round 2's length (as train.max_steps) and the encoding batch size.
  return harness.FREE + ("recipe.round2_steps", "recipe.encode_batch_size")


def check_config(config, source) -> None:
  """A recipe needs a `recipe` section with every field of `FIELDS`, and SQuAD data prepared
  by the config (`data.prepare: squad`), whose held-out splits it evaluates."""
  if "recipe" not in config:
    raise cli.UsageError(f"--config {source}: expected a `recipe` section (see "
                         "configs/squad.py), found none")
  missing = [f for f in FIELDS if f not in config.recipe]
  if missing:
    raise cli.UsageError(f"--config {source}: the `recipe` section lacks {', '.join(missing)}")
  r = config.recipe
  if r.window_words and r.window_stride > r.window_words:
    raise cli.UsageError(f"--config {source}: expected recipe.window_stride <= window_words "
                         f"(windows overlap or touch), found {r.window_stride} > {r.window_words}")
  if config.data.prepare != "squad":
    raise cli.UsageError(f"--config {source}: expected data.prepare 'squad' (the recipe mines "
                         f"the prepared training questions), found {config.data.prepare!r}")


class Recipe:
  """The stages of one recipe run: `config` (a locked ConfigDict with a `recipe` section) in
  `workdir`."""

  def __init__(self, config, workdir):
    self.config, self.workdir = config, Path(workdir).absolute()
    self.r = config.recipe
    self.data = Path(config.data.prepare_dir or self.workdir / "round1" / "data")

  # -- bookkeeping -----------------------------------------------------------------------------
  @property
  def record_file(self) -> Path:
    return self.workdir / "recipe.json"

  def done(self) -> dict:
    f = self.record_file
    return json.loads(f.read_text()) if f.is_file() else {}

  def _mark(self, stage: str, seconds: float):
    """Records a finished stage; `evaluate`, which a re-run extends, adds up its seconds."""
    from dpr_jax.data.textio import write_json
    rec = self.done()
    if stage in rec:
      seconds += rec[stage]["seconds"]
    rec[stage] = {"seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(self.record_file, rec)

  def check_workdir(self):
    """Refuses a workdir run with another config (but for the fields `_free` names), and
    prepared data of another split; then records the config, so that a change made with
    `train.allow_config_change` is what the next run is checked against."""
    from dpr_jax.data.textio import DataError
    from dpr_jax.training import harness
    record = "recipe-config.json"
    harness.check_workdir(self.config, self.workdir, tuple(self.config), record, _free())
    split = self.data / "split.json"
    want = self.config.data.prepare_args.get("val_splits", 1)
    if split.is_file() and json.loads(split.read_text()).get("val_splits", 1) != want:
      raise DataError(f"{split}: prepared with another number of held-out splits than the "
                      f"config's {want}; prepare again into an empty data folder")
    self.workdir.mkdir(parents=True, exist_ok=True)
    (self.workdir / record).write_text(self.config.to_json_best_effort(indent=1))

  def run(self, stages=STAGES) -> dict:
    self.check_workdir()
    for stage in [s for s in STAGES if s in stages]:
      if stage in self.done() and stage != "evaluate":
        log.info("recipe: %s already done; skipped", stage)
        continue
      log.info("recipe: %s", stage)
      t = time.time()
      if getattr(self, stage)() is not False:  # False: nothing was left to do
        self._mark(stage, time.time() - t)
    return self.done()

  def _tool(self, module: str, args: list[str]):
    import importlib
    args = [str(a) for a in args]
    log.info("recipe: python -m %s %s", module, " ".join(args))
    importlib.import_module(module).main(args)

  # -- inputs ----------------------------------------------------------------------------------
  @property
  def passages(self) -> Path:
    split = json.loads((self.data / "split.json").read_text())
    return Path(split["corpus"]) / "paragraphs.tsv.gz"

  def corpus(self, n: int) -> list:
    """The `--passages` (and `--paragraphs`) flags of what round `n`'s model encodes."""
    if n == 1 or not self.r.window_words:
      return ["--passages", self.passages]
    windows = self.workdir / f"windows-{self.r.window_words}-{self.r.window_stride}.tsv.gz"
    if not windows.is_file():
      from dpr_jax.tools.prepare import prepare_windows
      log.info("recipe: python -m dpr_jax.prepare windows --passages %s --out %s --words %d "
               "--stride %d", self.passages, windows, self.r.window_words, self.r.window_stride)
      prepare_windows(self.passages, windows, self.r.window_words, self.r.window_stride)
    return ["--passages", windows, "--paragraphs", self.passages]

  def splits(self) -> list[str]:
    from dpr_jax.tools.prepare import dev_name
    n = json.loads((self.data / "split.json").read_text()).get("val_splits", 1)
    return [dev_name(i) for i in range(n)]

  def round_config(self, n: int):
    """Round 1: the config as given. Round 2: continues from round 1's best checkpoint on the
    mined data, validating on round 1's dev file, with the `recipe.round2_*` settings."""
    c = copy.deepcopy(self.config)
    if n == 1:
      return c
    with c.unlocked():
      c.model.init = str(self.workdir / "round1")
      c.data.prepare = ""
      c.data.train_files = str(self.workdir / "mine" / "train.jsonl.gz")
      c.data.train_weights = ""
      c.data.keep_negatives = max(c.data.keep_negatives, self.r.mined_negatives
                                  + c.data.prepare_args.get("num_hard_negatives", 3))
      c.data.dev_file = str(self.data / "dev.jsonl.gz")
      c.data.num_hard_negatives = self.r.round2_hard_negatives
      c.train.max_steps = self.r.round2_steps
      c.optim.lr = self.r.round2_lr
      c.optim.warmup_steps = self.r.round2_warmup_steps
    return c

  # -- stages ----------------------------------------------------------------------------------
  def _train(self, n: int):
    from dpr_jax.training import loop
    loop.train(self.round_config(n), self.workdir / f"round{n}")

  def round1(self):
    self._train(1)

  def round2(self):
    self._train(2)

  def _encode(self, n: int):
    self._tool("dpr_jax.encode", ["--model", self.workdir / f"round{n}",
                                  *self.corpus(n)[:2], "--out", self.workdir / f"emb{n}",
                                  "--max_length", self.r.encode_max_length,
                                  "--batch_size", self.r.encode_batch_size])

  def encode1(self):
    self._encode(1)

  def encode2(self):
    self._encode(2)

  def mine(self):
    out = self.workdir / "mine"
    found = out / "train-round1.json"
    questions = self.data / "train-split.qas.jsonl.gz"
    if not questions.is_file():
      raise FileNotFoundError(f"{questions} not found: {self.data} was prepared by an older "
                              "`prepare squad`; prepare again into an empty data folder")
    self._tool("dpr_jax.retrieval.retrieve", [
        "--model", self.workdir / "round1", "--embeddings", self.workdir / "emb1",
        "--passages", self.passages, "--questions", questions,
        "--sample", self.r.mine_questions, "--k", self.r.mine_depth, "--no_text",
        "--out", found])
    self._tool("dpr_jax.retrieval.mine", [
        "--results", found, "--passages", self.passages, "--out", out / "train.jsonl.gz",
        "--num_hard_negatives", self.r.mined_negatives]
        + (["--mix", self.data / "train.jsonl.gz"] if self.r.mix_bm25 else []))

  def _retrievers(self):
    lam = 1.0 / self.config.loss.temperature if self.config.loss.similarity == "cosine" else 1.0
    yield "bm25", ["--retriever", "bm25", "--passages", self.passages]
    for n in [n for n in (1, 2) if f"encode{n}" in self.done()]:
      dense = ["--model", self.workdir / f"round{n}", "--embeddings", self.workdir / f"emb{n}",
               *self.corpus(n)]
      yield f"dense{n}", dense
      yield f"hybrid{n}", dense + ["--retriever", "hybrid", "--hybrid_lambda", lam,
                                   "--hybrid_depth", 100]

  def evaluate(self):
    from dpr_jax.retrieval.evaluate import format_table
    rows, scored = {}, False
    for split in self.splits():
      for name, args in self._retrievers():
        out = self.workdir / "eval" / f"{split}-{name}.json"
        metrics = out.with_suffix(".metrics.json")
        if metrics.is_file():  # done before the stage was cut
          rows[f"{split}/{name}"] = json.loads(metrics.read_text())
          continue
        self._tool("dpr_jax.retrieval.retrieve", args + [
            "--questions", self.data / f"{split}.qas.jsonl",
            "--k", 100, "--no_text", "--out", out])
        self._tool("dpr_jax.retrieval.evaluate", [out])
        rows[f"{split}/{name}"], scored = json.loads(metrics.read_text()), True
    from dpr_jax.data.textio import write_json
    write_json(self.workdir / "results.json", rows)
    lines = [f"## {k}\n\n{format_table(m)}\n" for k, m in rows.items()]
    (self.workdir / "results.md").write_text("\n".join(lines))
    return scored or "evaluate" not in self.done()


def main(argv=None):
  ap = cli.Parser("python -m dpr_jax.recipe", __doc__)
  ap.add_argument("--workdir", required=True, help="every stage's output and recipe.json")
  ap.add_argument("--stages", default=",".join(STAGES),
                  help=f"comma-separated stages to run, in order (default: all: {','.join(STAGES)})")
  a, config = cli.parse_with_config(ap, argv)
  stages = [s for s in a.stages.split(",") if s]
  bad = [s for s in stages if s not in STAGES]
  if bad:
    raise cli.UsageError(f"--stages: expected some of {','.join(STAGES)}, found {bad[0]!r}")
  check_config(config, a.config)
  done = Recipe(config, a.workdir).run(stages)
  print(json.dumps(done, indent=1))


if __name__ == "__main__":
  sys.exit(cli.recipe())
