"""`python -m dpr_jax.compile`: the tools' steps compile for TPU topologies on this CPU host
(libtpu, no TPU), and what the compiled programs say is what their shapes imply."""
import importlib.metadata
import importlib.util

import numpy as np
import pytest

from dpr_jax import cli, config_lib
from dpr_jax.data import examples
from dpr_jax.tools import compile as cli_compile
from dpr_jax.tpu import analysis, max_batch, topology

pytestmark = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                reason="libtpu is not installed (requirements-test.txt pins it)")
# A small vocabulary keeps the embedding tables from dominating memory and compile time.
SMALL = ["--config.model.bert.vocab_size=512"]
TOPOLOGIES = ["v5e:2x2", "v4:2x2x1"]


def _config(*overrides):
  return config_lib.load("tiny.py", config_lib.split_overrides(list(SMALL + list(overrides)))[1])


def _mesh(name):
  from dpr_jax.training import sharding
  topo = topology.parse(name)
  return topo, sharding.make_mesh(devices=topology.devices(topo))


def _compiled(prog, topo, mesh):
  from dpr_jax.tools.compile import analyse, compile_program
  compiled = compile_program(prog, topo)
  return compiled, analyse(prog, compiled, topo, mesh)


def _param_count(c):
  """BERT's parameters by hand (transformers' layout) for config `c` (both encoders + DPR's
  projection)."""
  b, h, f = c.model.bert, c.model.bert.hidden_size, c.model.bert.intermediate_size
  emb = (b.vocab_size + b.max_position_embeddings + 2) * h + 2 * h
  layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
  proj = h * c.model.projection_dim + c.model.projection_dim
  return 2 * (emb + b.num_hidden_layers * layer + proj)


@pytest.fixture(scope="module", params=TOPOLOGIES)
def mesh(request):
  return _mesh(request.param)


def test_train_step_compiles_with_the_bytes_its_shapes_imply(mesh):
  from dpr_jax.tpu import programs
  topo, m = mesh
  c = _config()
  prog = programs.train_program(c, m)
  compiled, rec = _compiled(prog, topo, m)
  n = topo.chips
  # fp32 parameters and Adam's two moments, replicated (fsdp=1), plus this chip's batch rows.
  state = 3 * 4 * _param_count(c)
  batch = sum(np.prod(x.shape) * 4 for x in prog.args[1].values()) / n
  mem = rec["memory"]
  # TPU tiles pad small arrays (a [2, 16] bias fills an (8, 128) tile): 25% covers that here.
  assert state + batch <= mem["argument"] <= 1.25 * (state + batch) + 2**20
  assert mem["alias"] >= state  # the state is donated: updated in place
  assert mem["fits"] and rec["fits"].startswith("fits")
  # The HLO gathers the passage embeddings [B*(1+H), proj] over every device of the batch axes.
  passages = c.train.global_batch * (1 + c.data.num_hard_negatives)
  gathers = [x for x in rec["collectives"] if x["op"] == "all-gather" and x["group"] == n
             and any(np.prod([int(d) for d in s.split("[")[1].rstrip("]").split(",")])
                     == passages * c.model.projection_dim for s in x["shapes"])]
  assert gathers, rec["collectives"]


def test_train_batch_is_the_batch_the_loop_feeds_at_the_longest_bucket(minilm_path):
  """The abstract batch has the arrays, shapes and dtypes of a real batch whose texts all
  reach the maximum lengths, tokenised as the training loop tokenises it."""
  from dpr_jax.models.tokenization import Tokenizer
  from dpr_jax.tpu import programs
  c = _config("--config.data.question_groups=2")
  long = " ".join(["paris"] * 80)
  psg = lambda i, j: examples.Passage(f"title {i}", f"{long} {i} {j}", f"{i}-{j}")
  exs = [examples.Example(f"{long} {i}?", ("a",), (psg(i, 0),), (psg(i, 1),), ())
         for i in range(16)]
  batches = examples.TrainBatches([examples.Dataset("x", exs, 0)], [1.0], 16, 1, 0)
  tok = Tokenizer(str(minilm_path), c.data.question_max_length, c.data.passage_max_length)
  real, _ = examples.global_batch_arrays(batches, tok, 0, c.data.question_max_length,
                                         c.data.passage_max_length, c.data.bucket_multiple, 0, 1,
                                         2, c.data.question_bucket_multiple)
  ours = programs.retriever_batch(c, 16)
  assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {
      k: (v.shape, v.dtype) for k, v in real.items()}
  assert ours["q_ids_0"].shape == (8, c.data.question_max_length)


@pytest.mark.parametrize("what", ["encode", "search", "reader"])
def test_encode_search_and_reader_steps_compile(mesh, what, tmp_path):
  from dpr_jax.tpu import programs
  topo, m = mesh
  c = _config()
  if what == "encode":
    prog = programs.encode_program(c, m, batch_size=64, max_length=32)
    # Parameters replicated on every chip, the batch split: fp32 params + int32 ids and mask.
    expect = 4 * _param_count(c) + 2 * 64 * 32 * 4 / topo.chips
  elif what == "search":
    prog = programs.search_program(m, rows=10000, dim=16, dtype="bfloat16")
    rows = prog.shapes["rows_per_device"]
    expect = rows * 16 * 2 + 512 * 16 * 4  # this chip's bf16 rows + the replicated queries
  else:
    import ml_collections
    r = config_lib.load("reader_nq.py", config_lib.split_overrides([
        "--config.model.init=random", "--config.data.max_length=32",
        "--config.data.passages_per_question=2", "--config.train.batch_questions=8"])[1])
    with r.unlocked():
      r.model.bert = ml_collections.ConfigDict(dict(
          vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
          intermediate_size=64, max_position_embeddings=64))
    prog = programs.reader_program(r, m)
    expect = None
  _, rec = _compiled(prog, topo, m)
  arg = rec["memory"]["argument"]
  if expect is not None:
    assert expect <= arg <= 1.25 * expect + 2**20, (arg, expect)
  assert rec["xla"]["flops"] > 0 and rec["roofline"]["seconds"] > 0


def test_grad_cache_keeps_temporaries_flat_as_the_batch_grows():
  from dpr_jax.tpu import programs
  topo, m = _mesh("v5e:2x2")
  temp = {}
  for chunk in (0, 2):
    c = _config(f"--config.train.grad_cache_chunk={chunk}",
                "--config.model.bert.hidden_size=64", "--config.model.bert.intermediate_size=256",
                "--config.model.bert.num_hidden_layers=1", "--config.data.passage_max_length=64",
                "--config.model.bert.max_position_embeddings=64")
    for b in (64, 256):
      temp[chunk, b] = _compiled(programs.train_program(c, m, b), topo, m)[1]["memory"]["temp"]
  # Without caching the activations of all 4x the examples are kept: temporaries grow > 2x.
  assert temp[0, 256] > 2 * temp[0, 64], temp
  # With a fixed chunk (2 questions per device per pass) only the embeddings, their gradients
  # and the score matrix grow: within 5% (9.97 -> 10.00 MB when measured; 8.71 -> 310.15 MB
  # without caching).
  assert temp[0, 64] > 0 and temp[2, 256] <= 1.05 * temp[2, 64], temp


def test_max_batch_from_a_start_xla_refuses_counts_it_as_failing(monkeypatch):
  """XLA refuses programs by its own budget (15.75 GiB on v5e), below the chip's 16 GiB: a
  refused starting batch whose reported need is under 16 GiB must not count as fitting."""
  from dpr_jax.tpu import programs
  gib = analysis.GIB

  def need(b):  # 15.92 GiB at 384 as XLA reported for nq.py in fp32; 0.02 GiB per example
    return int((15.92 + (b - 384) * 0.02) * gib)

  def compile_program(b, topo):
    if need(b) > 15.75 * gib:
      raise cli_compile.DoesNotFit("RESOURCE_EXHAUSTED", {"total": need(b)})
    return b
  monkeypatch.setattr(programs, "train_program", lambda config, mesh, b: b)
  monkeypatch.setattr(cli_compile, "compile_program", compile_program)
  monkeypatch.setattr(analysis, "memory", lambda b, chip: {"total": need(b)})
  topo, mesh = _mesh("v5e:2x2")
  a = cli_compile.parser().parse_args(["--topology", "v5e-4",
                                        "--max_batch", "--batch_tolerance", "0.125"])
  c = _config("--config.data.question_groups=1")
  first = {"shapes": {"global_batch": 384}, "memory": {"total": need(384)}, "error": "refused"}
  r = cli_compile.run_max_batch(a, c, mesh, topo, first)
  # By hand: 15.75 GiB is reached at 384 - 0.17 / 0.02 = 375.5, so 372 (a multiple of 4) fits.
  assert r["first_failing"] is not None and r["first_failing"] <= 384
  assert 0 < r["max_batch"] <= 372 and need(r["max_batch"]) <= 15.75 * gib
  assert r["first_failing"] - r["max_batch"] <= 0.125 * r["max_batch"]


def test_roofline_by_hand_and_a_loop_counted_once():
  v5e = topology.CHIPS["v5e"]  # 197e12 bf16 FLOP/s, 819e9 B/s HBM, 400e9 B/s ICI
  xla = {"flops": 1.97e12, "bytes_accessed": 8.19e9, "optimal_seconds": -1.0}
  gather = {"op": "all-gather", "bytes": 8e9, "group": 8, "count": 1, "cross_slice": False}
  r = analysis.roofline(1.97e12, xla, [gather], v5e)
  # compute 10 ms, HBM 10 ms, ICI: a ring all-gather sends 7/8 of 8 GB = 7 GB -> 17.5 ms.
  assert r["bounds"] == pytest.approx({"compute": 0.01, "hbm": 0.01, "ici": 0.0175})
  assert r["bound"] == "ici" and r["seconds"] == pytest.approx(0.0175)
  assert r["mfu"] == pytest.approx(0.01 / 0.0175) and r["loop_undercount"] is None
  # A loop XLA counted once: the analytic FLOPs 50x its count set the compute term (0.5 s), and
  # the record says the bytes (one pass) are a floor.
  looped = analysis.roofline(50 * 1.97e12, xla, [], v5e)
  assert looped["bounds"]["compute"] == pytest.approx(0.5) and looped["bound"] == "compute"
  assert looped["loop_undercount"] == pytest.approx(50)
  rec = {"program": "train", "topology": "v5e-8", "shapes": {}, "fits": "fits",
         "memory": {k: 1 for k in ("argument", "output", "alias", "temp", "generated_code",
                                   "total", "hbm")},
         "xla": xla, "roofline": looped, "analytic_flops_per_chip": 50 * 1.97e12,
         "collectives": []}
  assert "50x its count" in cli_compile.report(rec) and "floor" in cli_compile.report(rec)


def test_replica_groups_of_every_hlo_form():
  assert analysis.replica_groups("replica_groups={{0,2},{1,3}}, x") == [[0, 2], [1, 3]]
  assert analysis.replica_groups("replica_groups=[2,2]<=[2,2]T(1,0), x") == [[0, 2], [1, 3]]
  assert analysis.replica_groups(
      "replica_groups=mesh['a'=2,'b'=2] {'a'}, x") == [[0, 2], [1, 3]]


HLO = """HloModule m

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %ar = f32[8]{0} all-reduce(f32[8]{0} %x), channel_id=2, replica_groups={{0,1,2,3}}, to_apply=%add
}

ENTRY %main (a: f32[2,4]) -> f32[8,4] {
  %ag = bf16[8,4]{1,0} all-gather(bf16[2,4]{1,0} %a), channel_id=1, replica_groups=[1,4]<=[4], dimensions={0}
  %w = (s32[], f32[8]) while(%t), condition=%cond, body=%body
  %s = (bf16[2,4], bf16[8,4]) async-collective-start(%a), calls=%ag_fusion
}

%cond (c: (s32[], f32[8])) -> pred[] {
  %n = s32[]{:T(128)} constant(5)
  %i = s32[]{:T(128)} get-tuple-element(%c), index=0
  ROOT %lt = pred[]{:T(512)} compare(%i, %n), direction=LT
}

%ag_fusion (p0: bf16[2,4]) -> bf16[16,4] {
  %ag2 = bf16[16,4]{1,0} all-gather(bf16[2,4]{1,0} %p0), channel_id=3, replica_groups=[1,4]<=[4], dimensions={0}, frontend_attributes={chain_id="0"}
}

%async_collective_fusion.1 (p0: bf16[2,4]) -> bf16[16,4] {
  %ag3 = bf16[16,4]{1,0} all-gather(bf16[2,4]{1,0} %p0), channel_id=3, replica_groups=[1,4]<=[4], dimensions={0}, frontend_attributes={chain_id="0"}
}
"""


def test_collectives_count_loop_trips_and_slice_crossings():
  colls = analysis.collectives(HLO, device_slices=[0, 0, 1, 1])
  cs = {(c["op"], c["bytes"]): c for c in colls}
  assert len(colls) == 3
  gather, chained, reduce = cs["all-gather", 64], cs["all-gather", 128], cs["all-reduce", 32]
  assert gather["count"] == 1 and gather["group"] == 4
  # The loop's condition `i < 5` runs its body's all-reduce 5 times; its groups span slices.
  assert reduce["count"] == 5 and reduce["cross_slice"]
  # One asynchronous all-gather progressed by a continuation fusion: counted once.
  assert chained["instances"] == 2 and chained["count"] == 1
  # Ring all-gather: each chip sends 3/4 of the gathered buffer; all-reduce twice 3/4.
  assert analysis.traffic(gather) == 64 * 3 / 4
  assert analysis.traffic(reduce) == 2 * 32 * 3 / 4


def test_max_batch_search_finds_the_boundary_in_few_compilations():
  calls = []

  def bytes_at(b):  # affine + a small quadratic term, as compiled memory is
    calls.append(b)
    return 1000 + 37 * b + b * b // 50

  r = max_batch.search(bytes_at, 100_000, 8, 128)
  # By hand: 1000 + 37*1480 + 1480^2 // 50 = 99,568 fits; 1488 gives 100,338.
  assert (r["max_batch"], r["first_failing"], r["exact"]) == (1480, 1488, True)
  assert len(calls) <= 6


def test_max_batch_search_stops_within_its_tolerance_and_strides_by_its_growth():
  def run(**kw):
    calls = []

    def bytes_at(b):  # flat but for a quadratic term: a GradCache step's score rows
      calls.append(b)
      return 1000 + b * b // 50
    return max_batch.search(bytes_at, 100_000, 8, 64, max_compiles=20, **kw), calls

  # By hand: 1000 + 2224^2 // 50 = 99,923 fits; 2232 gives 100,636: the boundary is 2224.
  r, calls = run(tolerance=0.05, growth=16)
  lo, hi = r["max_batch"], r["first_failing"]
  assert lo <= 2224 < hi and hi - lo <= 0.05 * lo and lo >= 2224 * 0.95
  assert calls[:2] == [64, 128] and calls[2] <= 128 * 16
  exact, exact_calls = run()
  assert (exact["max_batch"], exact["first_failing"], exact["exact"]) == (2224, 2232, True)
  assert len(calls) < len(exact_calls)
  # Growth 2: no guess beyond twice the largest batch that fitted before it.
  for i, b in enumerate(exact_calls[2:], 2):
    fitted = [c for c in exact_calls[:i] if 1000 + c * c // 50 <= 100_000]
    failed = [c for c in exact_calls[:i] if 1000 + c * c // 50 > 100_000]
    assert failed or b <= 2 * max(fitted)


def test_max_batch_search_narrows_a_wide_bracket_from_flat_noisy_points():
  """A GradCache step: memory flat and noisy (XLA's rematerialisation) until the score matrix's
  quadratic term takes over, so the first failing guess lands far beyond the boundary."""
  calls = []

  def mem(b):
    return 60_000 + 3_000_000 // b + (1500 if (b // 64) % 3 == 0 else -1000) + b * b // 100_000

  def bytes_at(b):
    calls.append(b)
    return mem(b)

  def fits(b):
    return mem(b) <= 100_000

  r = max_batch.search(bytes_at, 100_000, 64, 512, max_compiles=12, tolerance=0.125, growth=16)
  # By hand, from 512 up: every batch up to 62,008 fits (38,452 left for b^2 / 1e5 at +1500
  # and 3e6 / b = 48), none above 63,992 (40,950 left at -1000).
  lo, hi = r["max_batch"], r["first_failing"]
  assert fits(lo) and not fits(hi) and hi - lo <= 0.125 * lo, (lo, hi, calls)
  assert 0.875 * 62_008 <= lo <= 63_992 and hi > 0.875 * 62_008
  first_fail = next(i for i, c in enumerate(calls) if not fits(c))
  assert calls[first_fail] >= 4 * 63_992  # the flat, falling points aimed far beyond
  assert len(calls) <= 9, calls
  # Each guess after that lies inside the bracket, at least a quarter below its failing end.
  for i, b in enumerate(calls[first_fail + 1:], first_fail + 1):
    fit = max(c for c in calls[:i] if fits(c))
    fail = min(c for c in calls[:i] if not fits(c))
    assert fit < b <= fail - (fail - fit) // 4 // 64 * 64, (b, fit, fail, calls)


def test_unknown_topology_lists_the_known_ones(capsys):
  assert cli.compile(["--config", "tiny.py", "--topology", "v9-8"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: --topology") and "v5e-" in err[0]


def test_libtpu_missing_says_how_to_install(monkeypatch, capsys):
  def missing(name):
    raise importlib.metadata.PackageNotFoundError(name)
  monkeypatch.setattr(topology.importlib.metadata, "version", missing)
  assert cli.compile(["--config", "tiny.py", "--topology", "v5e-8"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "libtpu" in err[0] and "pip install" in err[0]


@pytest.mark.parametrize("flag,value,expected", [
    ("--batch_growth", "1", "a number > 1"), ("--batch_tolerance", "1.5", "a number in [0, 1)"),
    ("--batch_tolerance", "x", "a number in [0, 1)")])
def test_batch_search_flags_are_checked(flag, value, expected, capsys):
  assert cli.compile(["--config", "tiny.py", "--topology", "v5e-8", "--max_batch",
                      flag, value]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and flag in err[0] and expected in err[0] and repr(value) in err[0]


def test_batch_not_divisible_by_the_devices(capsys):
  assert cli.compile(["--config", "tiny.py", "--topology", "v5e:2x4", *SMALL,
                      "--global_batch", "12"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "multiple of the device count 8" in err[0] and "12" in err[0]


def test_a_program_xla_rejects_ends_in_one_error_line():
  import jax
  import jax.numpy as jnp
  from dpr_jax.tools.compile import CompileError, compile_program
  from dpr_jax.tpu.programs import Program
  topo, m = _mesh("v5e:2x2")
  # A nonsymmetric eigendecomposition: implemented for CPUs only.
  fn = jax.jit(lambda x: jnp.linalg.eig(x)[0])
  arg = jax.ShapeDtypeStruct((4, 4), jnp.float32,
                             sharding=jax.sharding.NamedSharding(m, jax.sharding.PartitionSpec()))
  with pytest.raises(CompileError) as e:
    compile_program(Program("probe", fn, (arg,), 0.0, {}), topo)
  assert "does not compile for v5e-4" in str(e.value) and "eig" in str(e.value)
  assert "\n" not in str(e.value)


def test_a_program_larger_than_hbm_reports_what_xla_needs():
  assert analysis.out_of_memory(
      "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
      "temporaries (40.00G) exceeds available HBM (15.75G).") == {
          "total": 40 * 2**30, "hbm": int(15.75 * 2**30), "fits": False,
          "rejected_by_xla": True}


def test_two_slices_put_the_data_axis_across_them_and_the_hlo_says_what_crosses():
  from dpr_jax.tpu import programs
  from dpr_jax.training import sharding
  topo = topology.parse("v5e:2x2", num_slices=2)
  m = sharding.make_mesh(devices=topology.devices(topo))
  # 8 devices on the data axis, the first 4 of slice 0, the next 4 of slice 1.
  assert m.shape == {"data": 8, "fsdp": 1}
  assert [d.slice_index for d in m.devices.flat] == [0] * 4 + [1] * 4
  _, rec = _compiled(programs.train_program(_config(), m), topo, m)
  crossing = {c["op"] for c in rec["collectives"] if c["cross_slice"]}
  # Within a slice the collectives run over ICI (groups of 4); across slices XLA hands the
  # gradients' sums and the loss's gather of the passage embeddings to the DCN runtime.
  assert {"all-reduce over DCN", "all-gather over DCN"} <= crossing, crossing
  assert all(c["group"] <= 4 for c in rec["collectives"] if not c["cross_slice"])
  assert rec["roofline"]["dcn_bytes"] > 0 and "dcn" in rec["roofline"]["bounds"]


def test_auto_attention_is_pinned_to_what_a_tpu_runs():
  from dpr_jax.models.bert import auto_attention
  from dpr_jax.tpu.programs import tpu_attention
  # Traced on this CPU host, `auto` would pick the CPU form; compiled for a TPU it must be XLA's.
  assert auto_attention("cpu") == "deferred" and auto_attention("tpu") == "xla"
  assert tpu_attention("auto") == "xla" and tpu_attention("cudnn") == "cudnn"


def test_the_command_prints_no_libtpu_warnings(tmp_path):
  import json
  import os
  import subprocess
  import sys
  out = tmp_path / "r.jsonl"
  p = subprocess.run([sys.executable, "-m", "dpr_jax.compile", "--config", "tiny.py", *SMALL,
                      "--topology", "v5e-4", "--what", "search", "--passages", "1000",
                      "--out", str(out)], capture_output=True, text=True,
                     env={k: v for k, v in os.environ.items() if not k.startswith("TPU_")})
  assert p.returncode == 0, p.stderr[-2000:]
  assert "TPU_ACCELERATOR_TYPE" not in p.stderr and "TPU_WORKER_HOSTNAMES" not in p.stderr
  rec = json.loads(out.read_text())
  assert rec["program"] == "search" and rec["libtpu"] == "0.0.42.1" and rec["memory"]["fits"]
