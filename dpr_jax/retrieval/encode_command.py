"""Encode a passage corpus (DPR's psgs_w100.tsv layout) into embedding files.

  python encode.py --model PATH --passages FILE --out DIR [--shard_id i --num_shards n]

PATH: a training workdir (its best checkpoint, or --which latest), or a Hugging Face BERT / DPR
context-encoder directory. Re-running the same command resumes where a killed run stopped.
"""
import json

from dpr_jax import cli


def main(argv=None):
  ap = cli.Parser("python encode.py", __doc__)
  cli.add_model_args(ap)
  cli.add_passages_arg(ap)
  ap.add_argument("--out", required=True, help="output directory")
  ap.add_argument("--shard_id", type=cli.non_negative_int, default=0)
  ap.add_argument("--num_shards", type=cli.positive_int, default=1)
  ap.add_argument("--batch_size", type=cli.positive_int, default=64)
  ap.add_argument("--max_length", type=cli.positive_int, default=256, help="passage tokens")
  ap.add_argument("--chunk_size", type=cli.positive_int, default=4096,
                  help="passages per output file")
  ap.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                  help="stored embedding precision")
  ap.add_argument("--limit", type=cli.positive_int, default=None,
                  help="first N passages only (smoke runs)")
  a = ap.parse_args(argv)
  if a.shard_id >= a.num_shards:
    raise cli.UsageError(f"--shard_id: expected < --num_shards {a.num_shards}, found {a.shard_id}")

  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.models.tokenization import Tokenizer
  from dpr_jax.retrieval.encoding import encode_corpus
  from dpr_jax.training.loading import load_model
  corpus = read_corpus(a.passages, limit=a.limit)  # bad data fails before the model loads
  model, tok_path, desc = load_model(a.model, **cli.model_kwargs(a))
  m = encode_corpus(model, Tokenizer(tok_path, passage_max_length=a.max_length), corpus, a.out,
                    description=desc, shard_id=a.shard_id, num_shards=a.num_shards,
                    batch_size=a.batch_size, max_length=a.max_length, chunk_size=a.chunk_size,
                    dtype=a.dtype)
  print(json.dumps({k: v for k, v in m.items() if k != "parts"}, indent=1))
