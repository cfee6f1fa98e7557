"""sentence-transformers export: `SentenceTransformer(folder).encode` (PyTorch, an independent
implementation) reproduces our embeddings; our loader reads the folder back; the export CLI picks
the format and writes a model card with the workdir's validation numbers."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dpr_jax.configs import tiny
from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder
from dpr_jax.models.hf import CheckpointError
from dpr_jax.models.st_folder import load_st_encoder
from dpr_jax.models.tokenization import Tokenizer
from dpr_jax.tools import export, st_export
from dpr_jax.training import checkpoint, loading

st = pytest.importorskip("sentence_transformers")

QUESTIONS = ["who wrote hamlet?", "what is the capital of france", "when did the war end?"]
TITLES = ["Hamlet", "Paris", ""]
TEXTS = ["Hamlet is a tragedy written by William Shakespeare.",
         "Paris is the capital and most populous city of France, on the Seine.",
         "The war ended in 1945 with the surrender of Japan."]
TINY = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64)


def _perturb(enc, seed, scale):
  """Every parameter moved by noise: an export that wrote the initial weights would show."""
  state = nnx.state(enc, nnx.Param)
  r = np.random.default_rng(seed)
  for _, var in nnx.to_flat_state(state):
    v = np.asarray(var.get_value())
    var.set_value(jnp.asarray(v + r.normal(0, scale, v.shape), jnp.float32))
  nnx.update(enc, state)
  return enc


def _ours(enc, tok, texts):
  b = tok.questions(texts, max_length=64, pad_to_max=False)
  return np.asarray(enc(jnp.asarray(b["input_ids"]), jnp.asarray(b["attention_mask"])))


def _ours_passages(enc, tok):
  b = tok.passages(TITLES, TEXTS, max_length=64, pad_to_max=False)
  return np.asarray(enc(jnp.asarray(b["input_ids"]), jnp.asarray(b["attention_mask"])))


def _st_passages():
  """Our passage layout `[CLS] title [SEP] text [SEP]` as one string for sentence-transformers."""
  return [f"{t} [SEP] {x}" if t else x for t, x in zip(TITLES, TEXTS)]


def _st_encode(path, texts):
  return st.SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)


@pytest.fixture(scope="module")
def minilm_export(minilm_path, tmp_path_factory):
  enc = _perturb(load_st_encoder(minilm_path)[0], 0, 0.01)
  out = tmp_path_factory.mktemp("st") / "minilm"
  info = st_export.export_st(DualEncoder(enc), out, tokenizer_dir=minilm_path)
  return enc, out, info


def test_mean_cosine_model_equals_sentence_transformers(minilm_export, minilm_path):
  enc, out, info = minilm_export
  assert (enc.pooling, enc.normalize, info["similarity"]) == ("mean", True, "cosine")
  tok = Tokenizer(minilm_path)
  loaded = st.SentenceTransformer(str(out), device="cpu")
  assert loaded.similarity_fn_name == "cosine"
  got = loaded.encode(QUESTIONS + _st_passages(), convert_to_numpy=True)
  want = np.concatenate([_ours(enc, tok, QUESTIONS), _ours_passages(enc, tok)])
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
  original = _st_encode(minilm_path, QUESTIONS)
  assert np.abs(original - got[:3]).max() > 1e-3    # the perturbed weights were exported
  modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())]
  assert modules == ["Transformer", "Pooling", "Normalize"]


def test_round_trip_through_our_loader(minilm_export, minilm_path):
  enc, out, _ = minilm_export
  model, tok_path, desc = loading.load_model(out)
  assert (desc["pooling"], desc["normalize"], model.tied) == ("mean", True, True)
  tok = Tokenizer(tok_path)
  np.testing.assert_allclose(_ours(model.question, tok, QUESTIONS), _ours(enc, tok, QUESTIONS),
                             atol=1e-6, rtol=0)


def test_packaged_minilm_reads_its_pooling(minilm_path):
  model, _, desc = loading.load_model("minilm", pooling="cls")
  assert (model.question.pooling, model.question.normalize) == ("mean", True)


def _cls_projection_model():
  enc = lambda s: Encoder(TINY, pooling="cls", projection_dim=16, rngs=nnx.Rngs(s))
  model = DualEncoder(enc(1), enc(2))
  for e, s in ((model.question, 3), (model.passage, 4)):
    b = e.projection.bias
    b.set_value(jnp.asarray(np.random.default_rng(s).normal(0, 0.5, b.get_value().shape),
                            jnp.float32))
  return model


def test_cls_projection_untied_equals_sentence_transformers(minilm_path, tmp_path):
  model = _cls_projection_model()
  info = st_export.export_st(model, tmp_path, tokenizer_dir=minilm_path)
  assert not info["tied"] and info["similarity"] == "dot"
  tok = Tokenizer(minilm_path)
  np.testing.assert_allclose(_st_encode(tmp_path / "question", QUESTIONS),
                             _ours(model.question, tok, QUESTIONS), atol=1e-5, rtol=0)
  np.testing.assert_allclose(_st_encode(tmp_path / "passage", _st_passages()),
                             _ours_passages(model.passage, tok), atol=1e-5, rtol=0)
  dense = json.loads((tmp_path / "question" / "2_Dense" / "config.json").read_text())
  assert dense["activation_function"] == "torch.nn.modules.linear.Identity"
  assert "Two encoders" in (tmp_path / "README.md").read_text()
  again, _, desc = loading.load_model(tmp_path)
  assert not again.tied and desc["pooling"] == "cls"
  np.testing.assert_allclose(_ours_passages(again.passage, tok),
                             _ours_passages(model.passage, tok), atol=1e-6, rtol=0)


def test_unsupported_dense_is_refused(minilm_path, tmp_path):
  st_export.export_st(DualEncoder(_cls_projection_model().question), tmp_path,
                      tokenizer_dir=minilm_path)
  f = tmp_path / "2_Dense" / "config.json"
  f.write_text(json.dumps({**json.loads(f.read_text()),
                           "activation_function": "torch.nn.modules.activation.Tanh"}))
  with pytest.raises(CheckpointError, match="2_Dense/config.json: activation_function"):
    loading.load_model(tmp_path)


def _workdir(tmp_path, model, minilm_path, pooling, similarity):
  """A training workdir (config.json, model.json, an Orbax checkpoint, metrics.jsonl)."""
  wd = tmp_path / f"run_{pooling}"
  wd.mkdir()
  c = tiny.get_config()
  c.model.pooling, c.loss.similarity = pooling, similarity
  (wd / "config.json").write_text(c.to_json_best_effort(indent=1))
  checkpoint.write_model_spec(wd, checkpoint.model_spec(model, pooling=pooling,
                                                        tokenizer=minilm_path))
  ck = checkpoint.Checkpointer(wd)
  ck.save(4, {"params": nnx.to_pure_dict(nnx.state(model)), "step": jnp.int32(4)}, {"step": 4})
  ck.wait()
  ck.close()
  rows = [{"step": 2, "train/loss": 1.5}, {"step": 2, "eval/avg_rank": 3.25, "eval/top1": 0.375},
          {"step": 4, "eval/avg_rank": 1.625, "eval/top1": 0.5625}]
  (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return wd


def test_cli_auto_format_and_model_card(minilm_path, tmp_path, capsys):
  mean = DualEncoder(Encoder(TINY, pooling="mean", normalize=True, rngs=nnx.Rngs(0)))
  wd = _workdir(tmp_path, mean, minilm_path, "mean", "cosine")
  export.main(["--checkpoint", str(wd), "--out", str(tmp_path / "out"), "--which", "latest"])
  assert json.loads(capsys.readouterr().out)["format"] == "sentence-transformers"
  card = (tmp_path / "out" / "README.md").read_text()
  assert "| 2 | 3.25 | 0.375 |" in card and "| 4 | 1.625 | 0.5625 |" in card
  assert "1.5" not in card.split("## Validation")[1].split("## Recipe")[0]
  assert '"similarity": "cosine"' in card
  assert f"python -m dpr_jax.export --checkpoint {wd} --out" in card
  cls = DualEncoder(Encoder(TINY, pooling="cls", rngs=nnx.Rngs(0)))
  wd2 = _workdir(tmp_path, cls, minilm_path, "cls", "dot")
  export.main(["--checkpoint", str(wd2), "--out", str(tmp_path / "dpr"), "--which", "latest"])
  assert (tmp_path / "dpr" / "question_encoder" / "config.json").is_file()
  export.main(["--checkpoint", str(wd2), "--out", str(tmp_path / "forced"), "--which", "latest",
               "--format", "sentence-transformers"])
  got = _st_encode(tmp_path / "forced", QUESTIONS)
  np.testing.assert_allclose(got, _ours(cls.question, Tokenizer(minilm_path), QUESTIONS),
                             atol=1e-5, rtol=0)


def test_missing_tokenizer_writes_nothing(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(export.ExportError, match="empty: no tokenizer files"):
    st_export.export_st(DualEncoder(Encoder(TINY, rngs=nnx.Rngs(0))), tmp_path / "out",
                        tokenizer_dir=tmp_path / "empty")
  assert not (tmp_path / "out").exists()
