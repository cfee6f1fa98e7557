"""CPU-scale reader: the packaged MiniLM on SQuAD (see docs/reader.md). Training streams the
whole training split (gold paragraph + BM25 hard negatives, built by `prepare squad` into
`data.prepare_dir`); validation reads the held-out articles' gold paragraphs. 64 minutes
on 2 CPU cores (docs/results.md#end-to-end-qa); an interrupted run re-run resumes where it stopped.

  python -m dpr_jax.reader_train --config configs/reader_squad.py --workdir runs/reader \\
      --config.data.prepare_dir=data/squad
"""
from dpr_jax.configs import reader_nq


def get_config():
  c = reader_nq.get_config()
  c.model.init = "minilm"
  d = c.data
  d.prepare = "squad"
  d.prepare_args.squad_dir = ""   # the SQuAD folder (empty: $DPR_DATA_DIR/squad, ../shared/...)
  d.top = 20
  d.passages_per_question = 2     # the gold paragraph + 1 BM25 hard negative
  d.max_length = 192              # training; a positive's answer past the cut is read as a window
  d.question_max_length = 32
  t = c.train
  t.batch_questions = 16
  t.max_steps = 720
  t.log_every = 10
  t.save_every = 40
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 72
  c.optim.weight_decay = 0.01
  e = c.eval
  e.every = 80
  e.at_start = True
  e.top_k = 1
  e.max_questions = 400
  e.batch_questions = 16
  return c
