"""How often the questions of one training batch share a positive paragraph, and how many
(question, passage) pairs the loss masks, over `configs/squad.py`'s sampler (global batch 32,
1 hard negative, seed 12345): one epoch of batches of a DPR training file, no training.

  python bench/squad_shared_positives.py data/squad/train.jsonl.gz   # from `prepare squad`
"""
import sys, time
import numpy as np
from dpr_jax.configs import squad
from dpr_jax.data import examples as data

path = sys.argv[1]
c = squad.get_config()
t = time.time()
ds = data.load_dataset(path, c.data.keep_negatives)
b = data.TrainBatches([ds], [1.0], c.train.global_batch, c.data.num_hard_negatives, c.train.seed,
                      c.data.shuffle_positives)
per_q = 1 + c.data.num_hard_negatives
n_steps = b.steps_per_epoch
shared_batches = masked_batches = 0
masked_pairs, shared_pairs, hn_pairs = [], [], []
for step in range(n_steps):
  _, ps = b.batch(step)
  keys = data.passage_keys(ps)
  targets = np.arange(c.train.global_batch) * per_q
  m = (keys[None, :] == keys[targets][:, None])
  m[np.arange(len(targets)), targets] = False
  pos_cols = np.zeros(len(ps), bool); pos_cols[targets] = True
  sp = int(m[:, pos_cols].sum()); hn = int(m[:, ~pos_cols].sum())
  masked_pairs.append(sp + hn); shared_pairs.append(sp); hn_pairs.append(hn)
  shared_batches += sp > 0; masked_batches += sp + hn > 0
print(f"{path}: {len(ds.examples)} questions, {n_steps} batches of {c.train.global_batch} "
      f"(epoch 0, seed {c.train.seed}), {time.time() - t:.0f} s")
print(f"batches with >= 1 pair of questions sharing a positive paragraph: {shared_batches} "
      f"({shared_batches / n_steps:.1%})")
print(f"batches with >= 1 masked (question, passage) pair: {masked_batches} ({masked_batches / n_steps:.1%})")
print(f"masked pairs per batch: mean {np.mean(masked_pairs):.3f}, max {max(masked_pairs)} "
      f"(another question's positive {np.mean(shared_pairs):.3f}, a hard negative {np.mean(hn_pairs):.3f}); "
      f"filler negatives {b.filled_negatives}")
