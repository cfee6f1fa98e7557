"""Compile DPR's steps for a TPU topology on any host (no TPU, no weights, no data), and size them.

  python -m dpr_jax.compile --config nq.py --topology v5e-8 [--num_slices 2]
      [--what train,encode,reader,search] [--passages 21015324] [--max_batch] [--out FILE.jsonl]

For each program (the retriever's train step of the config, `encode.py`'s passage-encoding
step, the reader's train step of `--reader_config`, the mesh search of a 512-question batch over
`--passages` rows), per chip: argument / output / temporary bytes against the chip's HBM, FLOPs
(XLA's count beside the analytic one), XLA's `optimal_seconds`, a roofline step time and the MFU
it implies (both at best), and the collectives of the HLO with their bytes. `--max_batch`: the
largest global batch whose train step fits. Needs libtpu: pip install -e ".[tpu-compile]".
Every figure is a compile-time estimate (docs/tpu.md).
"""
from __future__ import annotations

import datetime
import json
import logging
import sys
from pathlib import Path

from dpr_jax import cli
from dpr_jax.tpu import analysis, topology

log = logging.getLogger("dpr_jax")
WHAT = ("train", "encode", "reader", "search")


class CompileError(ValueError):
  """A program that XLA cannot compile for the topology."""


class DoesNotFit(CompileError):
  """XLA's refusal of a program larger than the chip's HBM; `memory`: what it reported."""

  def __init__(self, message: str, memory: dict):
    super().__init__(message)
    self.memory = memory


def _what(text: str) -> list[str]:
  items = [t.strip() for t in text.split(",") if t.strip()]
  bad = [t for t in items if t not in WHAT]
  if bad or not items:
    raise cli.argparse.ArgumentTypeError(f"expected some of {','.join(WHAT)}, found {text!r}")
  return items


def _fraction(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    v = -1.0
  if not 0.0 <= v < 1.0:
    raise cli.argparse.ArgumentTypeError(f"expected a number in [0, 1), found {text!r}")
  return v


def _growth(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    v = 0.0
  if v <= 1.0:
    raise cli.argparse.ArgumentTypeError(f"expected a number > 1, found {text!r}")
  return v


def parser() -> cli.Parser:
  ap = cli.Parser("python -m dpr_jax.compile", __doc__)
  ap.add_argument("--topology", required=True,
                  help="TPU topology: v4-8, v5e-8, v5p-8, v6e-8, v5e-256, or VERSION:SHAPE "
                  "(v5e:2x4, v4:2x2x1)")
  ap.add_argument("--num_slices", type=cli.positive_int, default=1,
                  help="slices joined by the data-center network (data parallel over DCN)")
  ap.add_argument("--what", type=_what, default=["train"], help=f"some of {','.join(WHAT)}")
  ap.add_argument("--global_batch", type=cli.positive_int, default=None,
                  help="train: this global batch instead of the config's")
  ap.add_argument("--max_batch", action="store_true",
                  help="train: find the largest global batch that fits (a few compilations)")
  ap.add_argument("--batch_tolerance", type=_fraction, default=0.0,
                  help="--max_batch: stop once the first failing batch is within this fraction "
                  "of the largest fitting one (0: one batch multiple apart)")
  ap.add_argument("--batch_growth", type=_growth, default=2.0,
                  help="--max_batch: the largest step, as a factor of the largest fitting "
                  "batch, until a batch fails (GradCache steps can take 16)")
  ap.add_argument("--encode_batch", type=cli.positive_int, default=64,
                  help="encode: encode.py's --batch_size")
  ap.add_argument("--encode_length", type=cli.positive_int, default=None,
                  help="encode: encode.py's --max_length (default: the config's "
                  "data.passage_max_length)")
  ap.add_argument("--corpus", type=cli.positive_int, default=21015324,
                  help="encode: passages to encode for the time estimate (DPR's Wikipedia)")
  ap.add_argument("--reader_config", default="reader_nq.py", help="reader: its config")
  ap.add_argument("--passages", type=cli.positive_int, default=21015324,
                  help="search: rows of the sharded corpus")
  ap.add_argument("--search_dtype", choices=["float16", "bfloat16", "float32"],
                  default="float16", help="search: storage dtype (encode.py stores float16)")
  ap.add_argument("--k", type=cli.positive_int, default=100, help="search: passages per question")
  ap.add_argument("--out", help="append one JSON line per program to this file")
  ap.add_argument("--hlo_dir", help="write each program's optimised HLO text here")
  ap.add_argument("--label", default="", help="a name stored in each record (--out)")
  return ap


def compile_program(prog, topo):
  """-> the compiled executable, or CompileError with XLA's reason on one line."""
  try:
    return prog.fn.lower(*prog.args).compile()
  except Exception as e:  # XlaRuntimeError, and lowering errors naming the shapes
    if isinstance(e, cli.DOMAIN_ERRORS) and not type(e).__name__.endswith("RuntimeError"):
      raise
    reason = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
    message = f"the {prog.name} step does not compile for {topo.name}: {reason}"
    oom = analysis.out_of_memory(reason)
    if oom is not None:
      raise DoesNotFit(message, oom) from e
    raise CompileError(message) from e


def rejected(prog, topo, err: DoesNotFit) -> dict:
  """The record of a program XLA refused as larger than HBM: its memory only."""
  mem = err.memory
  return {"program": prog.name, "topology": topo.name, "chips": topo.chips,
          "num_slices": topo.num_slices, "chip": topo.chip.name, "shapes": prog.shapes,
          "memory": mem, "fits": analysis.fits_text(mem), "error": str(err)}


def analyse(prog, compiled, topo, mesh) -> dict:
  """The record of one compiled program (see the module docstring)."""
  chip = topo.chip
  slices = [getattr(d, "slice_index", 0) or 0 for d in mesh.devices.flat]
  mem = analysis.memory(compiled, chip)
  xla = analysis.cost(compiled)
  colls = analysis.collectives(compiled.as_text(), slices if topo.num_slices > 1 else None)
  model_flops_chip = prog.flops / topo.chips
  roof = analysis.roofline(model_flops_chip, xla, colls, chip)
  return {"program": prog.name, "topology": topo.name, "chips": topo.chips,
          "num_slices": topo.num_slices, "chip": chip.name, "shapes": prog.shapes,
          "memory": mem, "fits": analysis.fits_text(mem), "xla": xla,
          "analytic_flops_per_chip": model_flops_chip, "roofline": roof,
          "collectives": analysis.summarize(colls)}


def _program(what: str, a, config, mesh, global_batch=None):
  from dpr_jax.tpu import programs
  if what == "train":
    return programs.train_program(config, mesh, global_batch or a.global_batch)
  if what == "encode":
    return programs.encode_program(config, mesh, a.encode_batch,
                                   a.encode_length or config.data.passage_max_length)
  if what == "reader":
    from dpr_jax import config_lib
    return programs.reader_program(config_lib.load(a.reader_config, []), mesh)
  dim = programs.bert_config(config.model).hidden_size
  dim = config.model.get("projection_dim", 0) or dim
  return programs.search_program(mesh, a.passages, dim, a.search_dtype, k=a.k)


def _extras(rec: dict, a, config) -> None:
  """Whole-job figures: DPR's NQ recipe for the train step, the corpus for encoding."""
  t = rec["roofline"]["seconds"]
  if rec["program"] == "train" and "epochs" in config.train:
    steps = config.train.epochs * (58880 // rec["shapes"]["global_batch"])
    rec["nq_recipe"] = {"epochs": config.train.epochs, "questions": 58880, "steps": steps,
                        "hours_at_best": steps * t / 3600}
  if rec["program"] == "encode":
    batches = -(-a.corpus // rec["shapes"]["batch"])
    rec["corpus"] = {"passages": a.corpus, "hours_at_best": batches * t / 3600}


def report(rec: dict) -> str:
  if "error" in rec:
    return (f"{rec['program']} on {rec['topology']}: {json.dumps(rec['shapes'])}\n  XLA refuses "
            f"it: {rec['memory']['total'] / analysis.GIB:.2f} GiB needed per chip, "
            f"{rec['memory']['hbm'] / analysis.GIB:.2f} GiB available: {rec['fits']}")
  m, x, r, g = rec["memory"], rec["xla"], rec["roofline"], analysis.GIB
  lines = [f"{rec['program']} on {rec['topology']}: {json.dumps(rec['shapes'])}",
           f"  memory per chip: arguments {m['argument'] / g:.2f} GiB, output {m['output'] / g:.2f}"
           f" (aliased {m['alias'] / g:.2f}), temporaries {m['temp'] / g:.2f}, code "
           f"{m['generated_code'] / g:.2f} -> {m['total'] / g:.2f} of {m['hbm'] / g:.0f} GiB: "
           f"{rec['fits']}",
           f"  FLOPs per chip: {x['flops'] / 1e12:.3f} T by XLA, "
           f"{rec['analytic_flops_per_chip'] / 1e12:.3f} T analytic; bytes accessed "
           f"{x['bytes_accessed'] / g:.2f} GiB",
           f"  XLA optimal_seconds {x['optimal_seconds']:.4g}"
           + (f" (MFU {r['xla_mfu']:.0%} at best)" if x["optimal_seconds"] > 0 else
              " (not usable: the roofline below is the estimate)"),
           "  roofline at best: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in
                                               r["bounds"].items())
           + f" -> {r['seconds'] * 1e3:.2f} ms per step, {r['bound']}-bound, MFU "
           f"{r['mfu']:.0%} at best"]
  if r.get("loop_undercount"):
    lines.append(f"  XLA counted a loop body once (the analytic FLOPs are "
                 f"{r['loop_undercount']:.0f}x its count), and its bytes accessed with it: the "
                 "HBM term covers one pass, so the time above is a floor, not an estimate")
  for k, label in (("nq_recipe", "DPR's NQ recipe"), ("corpus", "the corpus")):
    if k in rec:
      lines.append(f"  {label}: {rec[k]['hours_at_best']:.2f} h at best "
                   f"({json.dumps({kk: v for kk, v in rec[k].items() if kk != 'hours_at_best'})})")
  if "max_batch" in rec:
    mb = rec["max_batch"]
    lines.append(f"  largest global batch that fits: {mb['max_batch']}"
                 + ("" if mb["exact"] else f" (first failing seen: {mb['first_failing']})"))
    lines.append("  compiled: " + ", ".join(f"{b}: {t / analysis.GIB:.2f} GiB"
                                            for b, t in mb["points"]))
  lines.append("  collectives (per step):")
  for c in rec["collectives"]:
    shapes = ",".join(c["shapes"]) if len(c["shapes"]) <= 3 else f"{len(c['shapes'])} arrays"
    lines.append(f"    {c['count']:>4} x {c['op']} {shapes} over {c['group']}"
                 f"{' ACROSS SLICES' if c['cross_slice'] else ''}: {c['bytes'] / 2**20:.2f} MiB"
                 f" each, {c['traffic'] / 2**20:.1f} MiB sent per chip")
  return "\n".join(lines)


def run_max_batch(a, config, mesh, topo, first: dict) -> dict:
  """`max_batch.search` from the record `first` of the config's batch."""
  from dpr_jax.tpu import max_batch, programs
  from dpr_jax.training import sharding
  hbm = int(topo.chip.hbm_gib * analysis.GIB)
  unit = sharding.batch_size_multiple(mesh) * max(config.data.question_groups,
                                                   config.train.grad_cache_chunk or 1)

  def refused(t):  # refused by XLA: over its HBM budget, failing whatever the bytes say
    return max(t, hbm + 1)

  def total(b):
    prog = programs.train_program(config, mesh, b)
    try:
      t = analysis.memory(compile_program(prog, topo), topo.chip)["total"]
    except DoesNotFit as e:
      t = refused(e.memory["total"])
    log.info("global batch %d: %.2f GiB per chip", b, t / analysis.GIB)
    return t
  b = first["shapes"]["global_batch"]
  t = first["memory"]["total"]
  return max_batch.search(total, hbm, unit, b,
                          known={b: refused(t) if "error" in first else t},
                          tolerance=a.batch_tolerance, growth=a.batch_growth)


def main(argv=None):
  ap = parser()
  a, config = cli.parse_with_config(ap, argv)
  topo = topology.parse(a.topology, a.num_slices)
  libtpu = topology.libtpu_version()
  import jax
  from dpr_jax.training import sharding
  mesh = sharding.make_mesh(fsdp=config.train.get("fsdp", 1), devices=topology.devices(topo))
  meta = {"command": "python -m dpr_jax.compile " + " ".join(sys.argv[1:] if argv is None
                                                              else argv),
          "jax": jax.__version__, "libtpu": libtpu, "config": a.config, "label": a.label,
          "date": datetime.date.today().isoformat()}
  for what in a.what:
    prog = _program(what, a, config, mesh)
    log.info("compiling the %s step for %s", what, topo.name)
    try:
      compiled = compile_program(prog, topo)
    except DoesNotFit as e:  # the memory XLA reports is the answer for this program
      rec = {**rejected(prog, topo, e), **meta}
    else:
      rec = {**analyse(prog, compiled, topo, mesh), **meta}
      _extras(rec, a, config)
      if a.hlo_dir:
        Path(a.hlo_dir).mkdir(parents=True, exist_ok=True)
        (Path(a.hlo_dir) / f"{what}.hlo.txt").write_text(compiled.as_text())
      del compiled
    if what == "train" and a.max_batch:
      rec["max_batch"] = run_max_batch(a, config, mesh, topo, rec)
    print(report(rec), flush=True)
    if a.out:
      with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(cli.compile())
