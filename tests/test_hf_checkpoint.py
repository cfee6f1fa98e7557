import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from dpr_jax.models.hf import CheckpointError, bert_prefixes, hf_name, load_hf_encoder


@pytest.fixture
def minilm_copy(tmp_path, minilm_path):
  d = tmp_path / "m"
  d.mkdir()
  for f in ("config.json", "model.safetensors"):
    shutil.copy(minilm_path / f, d / f)
  return d


def test_hf_names():
  assert hf_name(("layers", 3, "attention", "query", "kernel")) == (
      "encoder.layer.3.attention.self.query.weight", True)
  assert hf_name(("embeddings_norm", "scale")) == ("embeddings.LayerNorm.weight", False)
  assert hf_name(("layers", 0, "output_norm", "bias")) == (
      "encoder.layer.0.output.LayerNorm.bias", False)


def test_other_architecture_is_refused(minilm_copy):
  cfg = json.loads((minilm_copy / "config.json").read_text())
  cfg["model_type"] = "roberta"
  (minilm_copy / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(CheckpointError, match="model_type 'roberta' is not BERT-shaped"):
    load_hf_encoder(minilm_copy)


def test_misshaped_tensor_names_tensor_and_shapes(minilm_copy):
  t = load_file(str(minilm_copy / "model.safetensors"))
  t["encoder.layer.2.intermediate.dense.weight"] = np.zeros((1000, 384), np.float32)
  save_file(t, str(minilm_copy / "model.safetensors"))
  with pytest.raises(CheckpointError) as e:
    load_hf_encoder(minilm_copy)
  msg = str(e.value)
  assert "encoder.layer.2.intermediate.dense.weight" in msg
  assert "(1000, 384)" in msg and "(1536, 384)" in msg


def test_missing_tensor_is_named(minilm_copy):
  t = load_file(str(minilm_copy / "model.safetensors"))
  del t["encoder.layer.5.output.LayerNorm.bias"]
  save_file(t, str(minilm_copy / "model.safetensors"))
  with pytest.raises(CheckpointError, match=r"encoder\.layer\.5\.output\.LayerNorm\.bias.*missing"):
    load_hf_encoder(minilm_copy)


def test_prefixed_checkpoint_and_ambiguity(minilm_copy):
  t = load_file(str(minilm_copy / "model.safetensors"))
  both = {**{"bert." + k: v for k, v in t.items()}, **{"other.bert_model." + k: v for k, v in t.items()}}
  save_file(both, str(minilm_copy / "model.safetensors"))
  assert bert_prefixes(both) == ["bert.", "other.bert_model."]
  with pytest.raises(CheckpointError, match="expected one BERT"):
    load_hf_encoder(minilm_copy)
  enc = load_hf_encoder(minilm_copy, prefix="bert.")
  np.testing.assert_array_equal(np.asarray(enc.bert.word_embeddings.embedding.get_value()),
                                t["embeddings.word_embeddings.weight"])


def test_missing_directory_and_files(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    load_hf_encoder(str(tmp_path / "nope"))
  with pytest.raises(CheckpointError, match="config.json not found"):
    load_hf_encoder(tmp_path)
