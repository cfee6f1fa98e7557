"""Export to transformers' DPR classes: their pooler_output equals our embeddings; export ->
import -> export is the identity; pairs import into encode/retrieve/train."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import transformers  # noqa: E402  (after torch: transformers' PyTorch classes)
from flax import nnx
from safetensors.numpy import load_file

from dpr_jax.training import checkpoint, steps
from dpr_jax.tools import export
from dpr_jax.training.loading import build_dual_encoder, load_model
from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder

CFG = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=64)


def _randomize_norms(enc, seed):
  """LayerNorm scale/bias away from 1/0, so that a swapped or missing one shows."""
  state = nnx.state(enc, nnx.Param)
  r = np.random.default_rng(seed)
  for path, var in nnx.to_flat_state(state):
    if "norm" in str(path[-2]):
      var.set_value(jnp.asarray(r.normal(1.0 if path[-1] == "scale" else 0.0, 0.2,
                                         var.get_value().shape), jnp.float32))
  nnx.update(enc, state)
  return enc


def _model(tied=False, projection_dim=0, pooling="cls"):
  enc = lambda s: _randomize_norms(Encoder(CFG, pooling=pooling, projection_dim=projection_dim,
                                           rngs=nnx.Rngs(s)), s)
  return DualEncoder(enc(0), None if tied else enc(1))


def _workdir(tmp_path, model, tokenizer):
  """A real training workdir (model.json + an Orbax checkpoint) without training."""
  wd = tmp_path / "run"
  checkpoint.write_model_spec(wd.mkdir() or wd, checkpoint.model_spec(
      model, pooling=model.question.pooling, tokenizer=tokenizer))
  params = nnx.to_pure_dict(nnx.state(model))
  ck = checkpoint.Checkpointer(wd)
  ck.save(7, {"params": params, "step": jnp.int32(7)}, {"step": 7})
  ck.wait()
  ck.close()
  return wd


def _inputs(n, length, seed):
  r = np.random.default_rng(seed)
  lengths = r.integers(3, length + 1, n)
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
  return r.integers(1000, CFG.vocab_size, (n, length)) * mask, mask


@pytest.mark.parametrize("tied,projection_dim", [(False, 16), (True, 0)])
def test_exported_dirs_load_in_transformers_dpr_with_equal_pooler_output(
    tmp_path, minilm_path, tied, projection_dim):
  model = _model(tied, projection_dim)
  wd = _workdir(tmp_path, model, str(minilm_path))
  export.main(["--checkpoint", str(wd), "--out", str(tmp_path / "out"), "--which", "latest"])
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  for side, cls, sub in (("question", transformers.DPRQuestionEncoder, "question_encoder"),
                         ("passage", transformers.DPRContextEncoder, "ctx_encoder")):
    d = tmp_path / "out" / sub
    hf = cls.from_pretrained(str(d)).eval()
    assert not [k for k in load_file(str(d / "model.safetensors")) if "pooler" in k]
    ids, mask = _inputs(5, 24, seed=len(side))
    with torch.no_grad():
      theirs = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).pooler_output
    ours = steps.make_encode(graphdef, side)(params, jnp.asarray(ids, jnp.int32),
                                            jnp.asarray(mask, jnp.int32))
    assert theirs.shape == (5, projection_dim or CFG.hidden_size)
    assert np.abs(theirs.numpy() - np.asarray(ours)).max() <= 1e-4
    tok = transformers.AutoTokenizer.from_pretrained(str(d))
    assert tok("who wrote dpr?")["input_ids"][0] == tok.cls_token_id
  if tied:  # both directories hold the one shared encoder
    a = load_file(str(tmp_path / "out/question_encoder/model.safetensors"))
    b = load_file(str(tmp_path / "out/ctx_encoder/model.safetensors"))
    assert all(np.array_equal(v, b[k.replace("question_encoder", "ctx_encoder")])
               for k, v in a.items())


def test_export_import_export_gives_identical_tensors(tmp_path, minilm_path):
  model = _model(False, 8)
  export.export_model(model, tmp_path / "a", tokenizer_dir=minilm_path)
  again, _, info = load_model(tmp_path / "a")
  export.export_model(again, tmp_path / "b", tokenizer_dir=minilm_path)
  for sub in ("question_encoder", "ctx_encoder"):
    a = load_file(str(tmp_path / "a" / sub / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / sub / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (json.loads((tmp_path / "a" / sub / "config.json").read_text())
            == json.loads((tmp_path / "b" / sub / "config.json").read_text()))
  # train.py's initialisation from a pair: question and context encoders stay distinct
  init = build_dual_encoder(str(tmp_path / "a"))
  assert not init.tied and init.question.projection_dim == 8
  q0 = nnx.to_pure_dict(nnx.state(model.passage))
  q1 = nnx.to_pure_dict(nnx.state(init.passage))
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(q0), jax.tree.leaves(q1)))


def test_mean_pooled_model_needs_explicit_permission(tmp_path, minilm_path):
  model = _model(True, 0, pooling="mean")
  with pytest.raises(export.ExportError, match="mean pooling"):
    export.export_model(model, tmp_path / "x", tokenizer_dir=minilm_path)
  export.export_model(model, tmp_path / "x", tokenizer_dir=minilm_path,
                      allow_pooling_mismatch=True)
  again, _, info = load_model(tmp_path / "x")
  assert info["pooling"] == "mean" and again.tied


def test_missing_step_is_a_clear_error(tmp_path, minilm_path):
  wd = _workdir(tmp_path, _model(), str(minilm_path))
  with pytest.raises(FileNotFoundError, match="no step 3"):
    export.main(["--checkpoint", str(wd / "checkpoints" / "3"), "--out", str(tmp_path / "o")])


def test_reader_exports_to_transformers_dpr_reader(tmp_path, minilm_path):
  from dpr_jax.models.reader import Reader
  reader = Reader(CFG, rngs=nnx.Rngs(3))
  _randomize_norms(reader, 3)
  wd = tmp_path / "reader_run"
  wd.mkdir()
  checkpoint.write_model_spec(wd, {"kind": "reader", "bert": CFG.to_hf(),
                                   "tokenizer": str(minilm_path), "max_length": 64,
                                   "question_max_length": 16})
  ck = checkpoint.Checkpointer(wd)
  ck.save(2, {"params": nnx.to_pure_dict(nnx.state(reader))}, {"step": 2})
  ck.wait()
  ck.close()
  export.main(["--checkpoint", str(wd), "--out", str(tmp_path / "out"), "--which", "latest"])
  hf = transformers.DPRReader.from_pretrained(str(tmp_path / "out" / "reader")).eval()
  ids, mask = _inputs(4, 20, seed=5)
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), return_dict=True)
  start, end, select = reader(jnp.asarray(ids, jnp.int32)[None], jnp.asarray(mask, jnp.int32)[None])
  real = mask > 0  # logits at padding positions are not compared (attention differs there)
  assert np.abs(out.start_logits.numpy()[real] - np.asarray(start)[0][real]).max() <= 1e-4
  assert np.abs(out.end_logits.numpy()[real] - np.asarray(end)[0][real]).max() <= 1e-4
  assert np.abs(out.relevance_logits.numpy().ravel() - np.asarray(select)[0]).max() <= 1e-4


@pytest.mark.slow
def test_python_m_tools_export_runs(tmp_path, minilm_path):
  """`python -m dpr_jax.tools.export` (the module run directly): --help, and a real export of a
  workdir, whose question encoder loads back with the workdir's weights."""
  import subprocess
  import sys
  from pathlib import Path
  repo = Path(__file__).resolve().parent.parent
  p = subprocess.run([sys.executable, "-m", "dpr_jax.tools.export", "--help"], cwd=repo,
                     capture_output=True, text=True)
  assert p.returncode == 0 and p.stdout.startswith("usage: "), p.stderr[-2000:]
  model = _model(True, 0)
  wd = _workdir(tmp_path, model, str(minilm_path))
  p = subprocess.run([sys.executable, "-m", "dpr_jax.tools.export", "--checkpoint", str(wd),
                      "--out", str(tmp_path / "out"), "--which", "latest"], cwd=repo,
                     capture_output=True, text=True)
  assert p.returncode == 0, p.stderr[-2000:]
  assert json.loads(p.stdout)["source"].endswith("step 7")
  got = load_file(str(tmp_path / "out" / "question_encoder" / "model.safetensors"))
  kernel = np.asarray(model.question.bert.word_embeddings.embedding.get_value())
  np.testing.assert_array_equal(
      got["question_encoder.bert_model.embeddings.word_embeddings.weight"], kernel)
