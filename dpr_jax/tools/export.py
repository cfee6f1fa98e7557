"""Export a trained dual encoder to transformers' DPR classes (or a sentence-transformers folder).

  python -m dpr_jax.export --checkpoint runs/nq --out exported/nq [--which best|latest]
  python -m dpr_jax.export --checkpoint runs/nq/checkpoints/4000 --out exported/nq-4000
  python -m dpr_jax.export --checkpoint runs/squad --out exported/squad  # sentence-transformers
  python -m dpr_jax.export --format pyserini --embeddings emb/squad --out exported/squad-faiss

Writes `OUT/question_encoder/` (loads with `transformers.DPRQuestionEncoder.from_pretrained`) and
`OUT/ctx_encoder/` (`DPRContextEncoder`): config.json with model_type `dpr` (and
`projection_dim` when a projection was trained), `model.safetensors` under
`question_encoder.bert_model.*` / `ctx_encoder.bert_model.*` (+ `encode_proj.*`), no pooler, and
the tokenizer files. Tied encoders are written to both. Their `pooler_output` is our embedding
for a [CLS]-pooled, dot-product model (DPR's). A mean-pooled or cosine model has no DPR-class
equivalent: `--format auto` (the default) exports it as a sentence-transformers folder (see
`dpr_jax.tools.st_export`), and `--format dpr --allow_pooling_mismatch` writes DPR classes anyway
(the weights are exact; users must mean-pool / normalise `last_hidden_state` themselves).
`--format sentence-transformers` exports any model that way. Every dpr-jax tool reads OUT back.
A reader workdir (`--checkpoint` of a reader, or `--reader DIR` beside a retriever) is written
as `OUT/reader/`, loadable by `transformers.DPRReader`. `--format pyserini` writes encode.py's
passage embeddings as Pyserini's FaissSearcher index (`dpr_jax.tools.pyserini_export`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from dpr_jax.tools.export_files import (ExportError, copy_tokenizer, save_tensors,  # noqa: F401
                                        world_readable)

ROLES = {"question": ("question_encoder", "DPRQuestionEncoder"),
         "passage": ("ctx_encoder", "DPRContextEncoder")}


def encoder_tensors(enc, role: str) -> dict[str, np.ndarray]:
  """One `Encoder` under transformers' DPR names (PyTorch layout), `role` in ROLES."""
  from dpr_jax.models.hf import bert_tensors
  name = ROLES[role][0]
  out = bert_tensors(enc.bert, f"{name}.bert_model.")
  if enc.projection is not None:
    out[f"{name}.encode_proj.weight"] = np.ascontiguousarray(
        np.asarray(enc.projection.kernel.get_value(), np.float32).T)
    out[f"{name}.encode_proj.bias"] = np.asarray(enc.projection.bias.get_value(), np.float32)
  return out


def write_encoder(enc, role: str, out_dir: Path, tokenizer_dir: Path | None) -> Path:
  name, arch = ROLES[role]
  d = Path(out_dir) / name
  d.mkdir(parents=True, exist_ok=True)
  config = {**enc.bert.cfg.to_hf(), "model_type": "dpr", "architectures": [arch],
            "projection_dim": enc.projection_dim, "position_embedding_type": "absolute",
            "pad_token_id": 0}
  (d / "config.json").write_text(json.dumps(config, indent=2))
  save_tensors(encoder_tensors(enc, role), d / "model.safetensors")
  copy_tokenizer(tokenizer_dir, d)
  world_readable(d)
  return d


def write_reader(reader, out_dir: Path, tokenizer_dir: Path | None) -> Path:
  """Our `Reader` -> OUT/reader/, loadable by `transformers.DPRReader` (start, end and relevance
  logits equal ours)."""
  from dpr_jax.models.hf import bert_tensors
  d = Path(out_dir) / "reader"
  d.mkdir(parents=True, exist_ok=True)
  config = {**reader.bert.cfg.to_hf(), "model_type": "dpr", "architectures": ["DPRReader"],
            "projection_dim": 0, "position_embedding_type": "absolute", "pad_token_id": 0}
  (d / "config.json").write_text(json.dumps(config, indent=2))
  t = bert_tensors(reader.bert, "span_predictor.encoder.bert_model.")
  for name in ("qa_outputs", "qa_classifier"):
    lin = getattr(reader, name)
    t[f"span_predictor.{name}.weight"] = np.ascontiguousarray(
        np.asarray(lin.kernel.get_value(), np.float32).T)
    t[f"span_predictor.{name}.bias"] = np.asarray(lin.bias.get_value(), np.float32)
  save_tensors(t, d / "model.safetensors")
  copy_tokenizer(tokenizer_dir, d)
  world_readable(d)
  return d


def export_model(model, out_dir, *, tokenizer_dir=None, allow_pooling_mismatch: bool = False,
                 source: str = "model") -> dict:
  """A DualEncoder -> OUT/question_encoder + OUT/ctx_encoder. Returns what was written."""
  for role, enc in (("question", model.question), ("passage", model.passage)):
    if (enc.pooling != "cls" or enc.normalize) and not allow_pooling_mismatch:
      raise ExportError(
          f"{source}: the {role} encoder uses {enc.pooling} pooling"
          f"{' with unit-length output' if enc.normalize else ''}; transformers' DPR classes "
          "return the [CLS] vector, so their pooler_output would not be this model's embedding. "
          "Pass --allow_pooling_mismatch to export the (exact) weights anyway.")
  out_dir = Path(out_dir)
  dirs = {role: str(write_encoder(enc, role, out_dir, tokenizer_dir))
          for role, enc in (("question", model.question), ("passage", model.passage))}
  info = {"source": source, "tied": model.tied, "pooling": model.question.pooling,
          "normalize": model.question.normalize, "projection_dim": model.question.projection_dim,
          **dirs}
  (out_dir / "dpr_jax_export.json").write_text(json.dumps(info, indent=1))
  world_readable(out_dir)
  return info


def _pyserini(a) -> bool:
  """Checks that the flags name a model (--checkpoint) or embeddings (--format pyserini
  --embeddings); exports the embeddings in the second case. -> whether it did."""
  from dpr_jax import cli
  if (a.format == "pyserini") != (a.embeddings is not None) or (a.checkpoint is None) == (
      a.format != "pyserini"):
    raise cli.UsageError("python -m dpr_jax.export: expected --checkpoint (a model) or "
                         "--format pyserini --embeddings DIR, found "
                         f"--format {a.format}, --checkpoint {a.checkpoint}, --embeddings "
                         f"{a.embeddings}")
  if a.format != "pyserini":
    return False
  from dpr_jax.tools.pyserini_export import export_pyserini
  print(json.dumps(export_pyserini(a.embeddings, a.out), indent=1))
  return True


def main(argv=None):
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.export", __doc__)
  ap.add_argument("--checkpoint",
                  help="training workdir, or one of its step directories "
                       "(WORKDIR/checkpoints/STEP, WORKDIR/best/STEP)")
  ap.add_argument("--embeddings", help="--format pyserini: an encode.py output directory")
  ap.add_argument("--out", required=True, help="output directory")
  ap.add_argument("--which", choices=["best", "latest"], default="best",
                  help="for a workdir: the best checkpoint (by validation) or the latest")
  ap.add_argument("--allow_pooling_mismatch", action="store_true")
  ap.add_argument("--format", choices=["auto", "dpr", "sentence-transformers", "pyserini"],
                  default="auto",
                  help="auto: sentence-transformers for a mean-pooled or cosine model, DPR "
                       "classes otherwise (see dpr_jax.tools.st_export); pyserini: the "
                       "--embeddings as a Pyserini FAISS index (dpr_jax.tools.pyserini_export)")
  ap.add_argument("--reader", help="also export this reader workdir (`dpr_jax.reader.train`) "
                                   "as OUT/reader/ (DPRReader)")
  a = ap.parse_args(argv)
  if _pyserini(a):
    return
  from dpr_jax.training.loading import load_trained
  ck = Path(a.checkpoint)
  if not (ck.is_dir() or ck.name.isdigit() and ck.parent.name in ("checkpoints", "best")):
    raise FileNotFoundError(f"{a.checkpoint}: expected a training workdir or one of its step "
                            "directories, found " + ("a file" if Path(a.checkpoint).exists()
                                                     else "no such directory"))
  readers = [Path(a.reader)] if a.reader else []
  spec_file = Path(a.checkpoint) / "model.json"
  from dpr_jax.data.textio import read_json
  spec = read_json(spec_file, "a model spec (model.json)") if spec_file.is_file() else {}
  if isinstance(spec, dict) and spec.get("kind") == "reader":
    readers, a.checkpoint = [Path(a.checkpoint)], None
  for r in readers:
    reader, spec, got = load_trained(r, a.which)
    print(json.dumps({"reader": str(write_reader(reader, Path(a.out), spec.get("tokenizer"))),
                      "source": f"{r.absolute()} step {got}"}))
  if a.checkpoint is None:
    return
  ck = Path(a.checkpoint)
  step = None
  if ck.name.isdigit() and ck.parent.name in ("checkpoints", "best"):
    ck, step, which = ck.parent.parent, int(ck.name), ck.parent.name
  else:
    which = a.which
  model, spec, got = load_trained(ck, "best" if which == "best" else "latest", step=step)
  from dpr_jax.tools import st_export
  if st_export.wanted(model, a.format, a.allow_pooling_mismatch):
    return print(json.dumps(st_export.export_st(model, a.out, tokenizer_dir=spec.get("tokenizer"),
                                                workdir=ck.absolute(), step=got, argv=argv),
                            indent=1))
  info = export_model(model, a.out, tokenizer_dir=spec.get("tokenizer"),
                      allow_pooling_mismatch=a.allow_pooling_mismatch,
                      source=f"{ck.absolute()} step {got}")
  print(json.dumps(info, indent=1))


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.export())
