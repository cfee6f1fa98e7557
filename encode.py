"""Encode a passage corpus (DPR's psgs_w100.tsv layout) into embedding files.

  python encode.py --model PATH --passages FILE --out DIR [--shard_id i --num_shards n]

PATH: a training workdir (its best checkpoint, or --which latest), or a Hugging Face BERT / DPR
context-encoder directory. Re-running the same command resumes where a killed run stopped.
"""
import argparse
import json
import sys

from dpr_jax import config_lib


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  config_lib.add_model_args(ap)
  ap.add_argument("--passages", required=True, help="id<TAB>text<TAB>title TSV (.gz accepted)")
  ap.add_argument("--out", required=True, help="output directory")
  ap.add_argument("--shard_id", type=int, default=0)
  ap.add_argument("--num_shards", type=int, default=1)
  ap.add_argument("--batch_size", type=int, default=64)
  ap.add_argument("--max_length", type=int, default=256, help="passage tokens")
  ap.add_argument("--chunk_size", type=int, default=4096, help="passages per output file")
  ap.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                  help="stored embedding precision")
  ap.add_argument("--limit", type=int, default=None, help="first N passages only (smoke runs)")
  a = ap.parse_args(argv)

  from dpr_jax.training.loading import load_model
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.retrieval.encoding import encode_corpus
  from dpr_jax.models.tokenization import Tokenizer
  model, tok_path, desc = load_model(a.model, **config_lib.model_kwargs(a))
  corpus = read_corpus(a.passages, limit=a.limit)
  m = encode_corpus(model, Tokenizer(tok_path, passage_max_length=a.max_length), corpus, a.out,
                    description=desc, shard_id=a.shard_id, num_shards=a.num_shards,
                    batch_size=a.batch_size, max_length=a.max_length, chunk_size=a.chunk_size,
                    dtype=a.dtype)
  print(json.dumps({k: v for k, v in m.items() if k != "parts"}, indent=1))


if __name__ == "__main__":
  from dpr_jax import cpu_malloc
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  sys.exit(main())
