"""The compile-time estimates of docs/tpu.md: one `python -m dpr_jax.compile` run per row, each
appending its records (labelled by row) to bench/results/tpu_compile_<group>.jsonl. Resumable:
rows already in their file are skipped, so a killed run goes on where it stopped.

  nice -n 19 python bench/tpu_compile.py [ROW_PREFIX ...]
"""
import json
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).parent / "results"
BF16 = ["--config.model.dtype=bfloat16"]
GC = ["--config.train.grad_cache_chunk=8", "--config.data.question_groups=1"]
NQ = ["--config", "nq.py"]
MAX = ["--max_batch", "--batch_tolerance", "0.125"]  # the bracket within 12.5 %
ROWS = [  # (group, label, flags): in the order they run, most needed first
    ("train", "nq-bf16-v5e-8", NQ + BF16 + ["--topology", "v5e-8", "--hlo_dir",
                                            "/tmp/tpu_hlo/nq-bf16-v5e-8"]),
    ("train", "nq-bf16-v5p-8", NQ + BF16 + ["--topology", "v5p-8"]),
    ("train", "nq-bf16-v4-8", NQ + BF16 + ["--topology", "v4-8"]),
    ("train", "nq-bf16-v6e-8", NQ + BF16 + ["--topology", "v6e-8"]),
    ("search", "search-bf16-v5e-8", NQ + ["--what", "search", "--search_dtype", "bfloat16",
                                          "--topology", "v5e-8"]),
    ("search", "search-bf16-v5e-4", NQ + ["--what", "search", "--search_dtype", "bfloat16",
                                          "--topology", "v5e-4"]),
    ("search", "search-bf16-v5e-1", NQ + ["--what", "search", "--search_dtype", "bfloat16",
                                          "--topology", "v5e-1"]),
    ("encode", "encode-bf16-v5e-8", NQ + BF16 + ["--what", "encode", "--encode_batch", "512",
                                                 "--topology", "v5e-8"]),
    ("train", "h200-shapes-bf16-v5e-8", NQ + BF16 + [
        "--config.data.question_max_length=32", "--config.data.question_groups=1",
        "--topology", "v5e-8"]),
    ("train", "nq-bf16-2xv5e-8", NQ + BF16 + ["--topology", "v5e-8", "--num_slices", "2"]),
    ("reader", "reader-fp32-v5e-8", NQ + ["--what", "reader", "--topology", "v5e-8"]),
    ("encode", "encode-bf16-v5p-8", NQ + BF16 + ["--what", "encode", "--encode_batch", "512",
                                                 "--topology", "v5p-8"]),
    ("encode", "encode-bf16-v4-8", NQ + BF16 + ["--what", "encode", "--encode_batch", "512",
                                                "--topology", "v4-8"]),
    ("encode", "encode-bf16-v6e-8", NQ + BF16 + ["--what", "encode", "--encode_batch", "512",
                                                 "--topology", "v6e-8"]),
    ("search", "search-bf16-v4-8", NQ + ["--what", "search", "--search_dtype", "bfloat16",
                                         "--topology", "v4-8"]),
    ("search", "search-bf16-v5p-8", NQ + ["--what", "search", "--search_dtype", "bfloat16",
                                          "--topology", "v5p-8"]),
    ("search", "search-bf16-v6e-8", NQ + ["--what", "search", "--search_dtype", "bfloat16",
                                          "--topology", "v6e-8"]),
    ("train", "nq-bf16-v4-128", NQ + BF16 + ["--topology", "v4-128"]),
    ("train", "nq-fp32-v5e-8", NQ + ["--topology", "v5e-8"]),
    # The searches start near their boundary: without caching, 384 (bf16) or 352 (fp32) fits;
    # with caching, memory
    # hardly grows until the in-batch score matrix's quadratic term dominates, near 10^5.
    ("max_batch", "max-bf16-v5e-8", NQ + BF16 + ["--topology", "v5e-8", "--global_batch", "384"]
     + MAX),
    ("max_batch", "max-bf16-gc-v5e-8", NQ + BF16 + GC + ["--topology", "v5e-8", "--global_batch",
                                                         "65536"] + MAX),
    ("max_batch", "max-fp32-gc-v5e-8", NQ + GC + ["--topology", "v5e-8", "--global_batch",
                                                  "49152"] + MAX),
    ("max_batch", "max-fp32-v5e-8", NQ + ["--topology", "v5e-8", "--global_batch", "352"] + MAX),
]


def done(path: Path) -> set:
  if not path.is_file():
    return set()
  return {json.loads(l).get("label") for l in path.read_text().splitlines() if l.strip()}


def main(prefixes):
  OUT.mkdir(exist_ok=True)
  for group, label, flags in ROWS:
    if prefixes and not any(label.startswith(p) for p in prefixes):
      continue
    out = OUT / f"tpu_compile_{group}.jsonl"
    if label in done(out):
      continue
    cmd = [sys.executable, "-m", "dpr_jax.compile", *flags, "--out", str(out), "--label", label]
    print("$", " ".join(cmd[1:]), flush=True)
    status = subprocess.call(cmd)
    print(f"{label}: exit {status}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
