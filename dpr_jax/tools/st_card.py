"""The model card (README.md) of a sentence-transformers export: what the model is, what it was
trained on, the recipe, the export command and the validation numbers of the training workdir's
metrics.jsonl (only numbers found there)."""
from __future__ import annotations

import json
from pathlib import Path

MAX_ROWS = 20


def eval_records(workdir) -> list[dict]:
  """The metrics.jsonl lines holding `eval/` numbers, in file order (empty without a file)."""
  f = Path(workdir) / "metrics.jsonl" if workdir else None
  if f is None or not f.is_file():
    return []
  rows = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
  return [r for r in rows if any(k.startswith("eval/") for k in r)]


def _fmt(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def validation_table(records: list[dict]) -> str:
  if not records:
    return "No validation numbers: the workdir's metrics.jsonl has no `eval/` records.\n"
  keys = sorted({k for r in records for k in r if k.startswith("eval/")})
  shown = records[-MAX_ROWS:]
  lines = ["| step | " + " | ".join(k[5:] for k in keys) + " |",
           "|---" * (len(keys) + 1) + "|"]
  lines += ["| " + " | ".join([str(r["step"])] + [_fmt(r[k]) if k in r else "" for k in keys])
            + " |" for r in shown]
  note = (f"\nThe last {MAX_ROWS} of {len(records)} validation records.\n"
          if len(records) > MAX_ROWS else "")
  return ("From the training workdir's `metrics.jsonl` (`avg_rank`: mean rank of each "
          "validation question's positive among all validation passages, 0 = first; `topK`: "
          "fraction ranked in the first K).\n\n" + "\n".join(lines) + "\n" + note)


def _trained_on(cfg: dict | None) -> str:
  if cfg is None:
    return "Unknown: exported from a model without a training workdir (no config.json)."
  d = cfg["data"]
  data = (f"data prepared by `dpr_jax.prepare {d['prepare']}`" if d.get("prepare")
          else f"DPR training files `{d.get('train_files', '')}`")
  dev = f", validated on `{d['dev_file']}`" if d.get("dev_file") else ""
  return (f"Initialised from `{cfg['model']['init']}`, trained on {data}{dev}, questions "
          f"truncated to {d['question_max_length']} tokens and passages to "
          f"{d['passage_max_length']}.")


def model_card(model, *, cfg, workdir, step, similarity: str, max_seq_length: int,
               command: str) -> str:
  q = model.question
  c = q.bert.cfg
  arch = (f"BERT ({c.num_hidden_layers} layers, hidden size {c.hidden_size}), "
          f"{q.pooling} pooling" + (f", a trained {q.projection_dim}-d projection (Dense)"
                                    if q.projection_dim else "")
          + (", unit-length output (Normalize)" if q.normalize else ""))
  untied = "" if model.tied else (
      "\n**Two encoders.** This model was trained with separate question and passage encoders: "
      "encode questions with the `question/` folder and passages with `passage/`, then compare "
      "with the similarity below. Each folder loads with `SentenceTransformer(path)`.\n")
  recipe = (f"```json\n{json.dumps(cfg, indent=1)}\n```\n" if cfg is not None
            else "No training config.\n")
  q_dir, p_dir = ("PATH", "PATH") if model.tied else ("PATH/question", "PATH/passage")
  source = f"`{workdir}` (step {step})" if workdir else "an in-memory model"
  return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, feature-extraction, dense-retrieval, dpr-jax]
---
# Dense passage retriever (dpr-jax export)

A dual encoder trained with dpr-jax, exported from {source}: {arch}.
Similarity: `{similarity}`{" (the model emits unit vectors)" if q.normalize else ""}.
Inputs longer than {max_seq_length} tokens are truncated.
{untied}
## Trained on
{_trained_on(cfg)}

## Use
```python
from sentence_transformers import SentenceTransformer
questions = SentenceTransformer("{q_dir}").encode(["who wrote hamlet?"])
# Passages as the model saw them in training: "title [SEP] text".
passages = SentenceTransformer("{p_dir}").encode(["Hamlet [SEP] Hamlet is a tragedy by ..."])
scores = questions @ passages.T
```
Every dpr-jax tool also takes this folder as `--model`.

## Validation
{validation_table(eval_records(workdir))}
## Recipe
The training config (`config.json` of the workdir):

{recipe}
## Export command
```
{command}
```
"""
