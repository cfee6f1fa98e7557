"""Export a trained dual encoder as a sentence-transformers model folder.

  python -m dpr_jax.export --checkpoint runs/squad --out exported/squad-st \\
      [--format auto|sentence-transformers|dpr]

`auto` (the default) writes this format for a mean-pooled or cosine-trained model (what
sentence-transformers computes natively) and transformers' DPR classes for a [CLS] / dot-product
one; `sentence-transformers` forces it for a [CLS] model too. The folder holds `modules.json`,
the Transformer module at its root (config.json + model.safetensors of a plain `BertModel`,
tokenizer files, sentence_bert_config.json), `1_Pooling/config.json` (mean or cls),
`2_Dense/` (identity activation, the trained bias) when a projection was trained, `Normalize`
when the model emits unit vectors, config_sentence_transformers.json (the similarity) and a
model card README.md. Tied encoders are one such folder; untied ones two, `question/` and
`passage/`. `dpr_jax.models.st_folder` reads them back, so every `--model` takes them.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np

from dpr_jax.tools.export_files import check_tokenizer, copy_tokenizer, save_tensors

FORMATS = ("auto", "dpr", "sentence-transformers")


def wanted(model, fmt: str, allow_pooling_mismatch: bool = False) -> bool:
  """Whether `--format fmt` means this format for `model`. `auto`: yes for a mean-pooled or
  unit-length model, unless DPR classes were asked for with --allow_pooling_mismatch."""
  if fmt not in FORMATS:
    raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
  native = any(e.pooling == "mean" or e.normalize for e in (model.question, model.passage))
  return fmt == "sentence-transformers" or (fmt == "auto" and native
                                            and not allow_pooling_mismatch)


def write_folder(enc, out: Path, *, tokenizer_dir, max_seq_length: int, similarity: str,
                 card: str) -> Path:
  """One `Encoder` -> a sentence-transformers folder at `out`."""
  from dpr_jax.models.hf import bert_tensors
  from dpr_jax.models.st_folder import IDENTITY
  out.mkdir(parents=True, exist_ok=True)
  config = {**enc.bert.cfg.to_hf(), "model_type": "bert", "architectures": ["BertModel"],
            "position_embedding_type": "absolute", "pad_token_id": 0}
  (out / "config.json").write_text(json.dumps(config, indent=2))
  save_tensors(bert_tensors(enc.bert), out / "model.safetensors")
  copy_tokenizer(tokenizer_dir, out)
  (out / "sentence_bert_config.json").write_text(json.dumps(
      {"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
  modules = [("Transformer", "")]
  h = enc.bert.cfg.hidden_size
  (out / "1_Pooling").mkdir(exist_ok=True)
  # The boolean keys load in every sentence-transformers release (2.x to 6.x).
  (out / "1_Pooling" / "config.json").write_text(json.dumps(
      {"word_embedding_dimension": h, "pooling_mode_cls_token": enc.pooling == "cls",
       "pooling_mode_mean_tokens": enc.pooling == "mean", "pooling_mode_max_tokens": False,
       "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
  modules.append(("Pooling", "1_Pooling"))
  if enc.projection is not None:
    d = out / "2_Dense"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(
        {"in_features": h, "out_features": enc.projection_dim, "bias": True,
         "activation_function": IDENTITY[0]}, indent=2))
    kernel = np.asarray(enc.projection.kernel.get_value(), np.float32)
    save_tensors({"linear.weight": np.ascontiguousarray(kernel.T),
           "linear.bias": np.asarray(enc.projection.bias.get_value(), np.float32)},
          d / "model.safetensors")
    modules.append(("Dense", "2_Dense"))
  if enc.normalize:
    name = f"{len(modules)}_Normalize"
    (out / name).mkdir(exist_ok=True)
    modules.append(("Normalize", name))
  (out / "modules.json").write_text(json.dumps(
      [{"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{k}"}
       for i, (k, p) in enumerate(modules)], indent=2))
  (out / "config_sentence_transformers.json").write_text(json.dumps(
      {"similarity_fn_name": similarity, "prompts": {}, "default_prompt_name": None}, indent=2))
  (out / "README.md").write_text(card)
  return out


def _training_config(workdir) -> dict | None:
  f = Path(workdir) / "config.json" if workdir else None
  return json.loads(f.read_text()) if f and f.is_file() else None


def export_st(model, out_dir, *, tokenizer_dir, workdir=None, step=None,
              argv: list[str] | None = None) -> dict:
  """A DualEncoder -> OUT (tied) or OUT/question + OUT/passage (untied). `tokenizer_dir`: the
  training tokenizer's files (checked before anything is written). `workdir` (a training
  workdir) supplies the recipe and validation numbers of the model card; `argv` (default
  sys.argv[1:]): the export command's arguments, for the card."""
  from dpr_jax.tools import st_card
  check_tokenizer(tokenizer_dir, "a sentence-transformers folder needs the training tokenizer")
  out_dir = Path(out_dir)
  cfg = _training_config(workdir)
  q = model.question
  if cfg is not None:
    similarity = cfg["loss"]["similarity"]
    max_len = int(cfg["data"]["passage_max_length"])
  else:
    similarity = "cosine" if q.normalize else "dot"
    max_len = q.bert.cfg.max_position_embeddings
  command = ["python", "-m", "dpr_jax.export", *(sys.argv[1:] if argv is None else argv)]
  card = st_card.model_card(model, cfg=cfg, workdir=workdir, step=step, similarity=similarity,
                            max_seq_length=max_len, command=shlex.join(command))
  kw = dict(tokenizer_dir=tokenizer_dir, max_seq_length=max_len, similarity=similarity, card=card)
  if model.tied:
    dirs = {"model": str(write_folder(q, out_dir, **kw))}
  else:
    dirs = {"question": str(write_folder(q, out_dir / "question", **kw)),
            "passage": str(write_folder(model.passage, out_dir / "passage", **kw))}
    (out_dir / "README.md").write_text(card)
  return {"format": "sentence-transformers", "source": str(workdir) if workdir else "model",
          "step": step, "tied": model.tied, "pooling": q.pooling, "normalize": q.normalize,
          "projection_dim": q.projection_dim, "similarity": similarity, **dirs}
