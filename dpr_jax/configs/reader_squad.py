"""CPU-scale reader: the packaged MiniLM on SQuAD, trained on BM25 results for training
questions (see docs/reader.md), validated on the held-out articles' questions.

  python -m dpr_jax.reader_train --config configs/reader_squad.py --workdir runs/reader \\
      --config.data.train_results=runs/ret/bm25_train.json \\
      --config.data.dev_results=runs/ret/bm25.json
"""
from dpr_jax.configs import reader_nq
from dpr_jax.data import resources


def get_config():
  c = reader_nq.get_config()
  c.model.init = "minilm"
  c.data.train_results = ""
  c.data.dev_results = ""
  c.data.passages = str(resources.data_dir() / "squad" / "paragraphs.tsv.gz")
  c.data.top = 20
  c.data.passages_per_question = 4
  c.data.max_length = 192
  c.data.question_max_length = 32
  c.train.batch_questions = 8
  c.train.max_steps = 300
  c.train.log_every = 10
  c.train.save_every = 100
  c.optim.lr = 5e-5
  c.optim.warmup_steps = 30
  c.eval.every = 150
  c.eval.at_start = False
  c.eval.top_k = 10
  c.eval.max_questions = 300
  c.eval.batch_questions = 4
  return c
