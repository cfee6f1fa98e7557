"""The reader's training rows never read a question's positive as one of its negatives; a row
short of negatives gets empty slots that the selection loss leaves out."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dpr_jax.data.examples import Example, Passage
from dpr_jax.reader import data as reader_data


@pytest.fixture(scope="module")
def tok(minilm_path):
  return reader_data.ReaderTokenizer(minilm_path, max_length=48, question_max_length=16)


def _texts(b, tok, row):
  """The passage text each slot of a row reads ('' for an empty slot)."""
  out = []
  for ids, tm in zip(b["input_ids"][row], b["text_mask"][row]):
    out.append(tok.hf.decode(ids[tm > 0].tolist()))
  return out


def test_a_positive_is_never_its_own_negative(tok):
  para = Passage("Rome", "the porta pia is a gate of rome", "p1")
  other = Passage("Nile", "the nile river flows north", "p2")
  # q0 and q1 read the same paragraph (as SQuAD's questions do); q0's one hard negative is its
  # positive again (same id); q2 has another paragraph.
  exs = [Example("which gate?", ("porta pia",), (para,), (Passage("R", "x", "p1"),), ()),
         Example("gate of what city?", ("rome",), (para,), (), ()),
         Example("which river?", ("nile",), (other,), (), ())]
  b, _ = reader_data.train_batch(exs, [0, 1, 2], np.random.default_rng(0), tok, questions=3,
                                 passages=3)
  for row, own in ((0, para), (1, para), (2, other)):
    texts = _texts(b, tok, row)
    assert texts[0] == own.text
    real = [t for t, m in zip(texts[1:], b["passage_mask"][row][1:]) if m]
    assert own.text not in real
  # q0 and q1 can only read q2's paragraph as a negative, q2 only theirs.
  assert b["passage_mask"].tolist() == [[1, 1, 1]] * 3
  assert set(_texts(b, tok, 0)[1:]) == {other.text} == set(_texts(b, tok, 1)[1:])
  # One question alone with no negative: its row is the positive and empty slots.
  b, _ = reader_data.train_batch(exs[1:2], [0], np.random.default_rng(0), tok, questions=1,
                                 passages=3)
  assert b["passage_mask"].tolist() == [[1, 0, 0]]
  assert _texts(b, tok, 0) == [para.text, "", ""]
  assert b["attention_mask"][0, 1].sum() == 2  # [CLS] [SEP]


def test_empty_slots_are_left_out_of_the_loss(tok):
  """The loss of a row with an empty slot equals the loss of the same row without the slot."""
  from dpr_jax.models.bert import BertConfig
  from dpr_jax.models.reader import Reader
  from dpr_jax.reader.train import batch_loss
  para = Passage("Rome", "the porta pia is a gate of rome", "p1")
  ex = Example("which gate?", ("porta pia",), (para,), (Passage("N", "a hill", "n1"),), ())
  b, _ = reader_data.train_batch([ex], [0], np.random.default_rng(0), tok, questions=1,
                                 passages=3)
  assert b["passage_mask"].tolist() == [[1, 1, 0]]
  cut = {k: v[:, :2] if v.ndim >= 2 and k not in ("span_start", "span_end", "span_mask")
         else v for k, v in b.items()}
  del cut["passage_mask"]
  model = Reader(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=4, intermediate_size=64,
                            max_position_embeddings=48), rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  f = jax.jit(lambda b: batch_loss(graphdef, params, b, None)[1])
  full, without = f(b), f(cut)
  for k in ("loss", "select_loss"):
    assert abs(float(full[k]) - float(without[k])) <= 1e-6 * abs(float(without[k]))
  # Unmasked, the empty slot would be a third negative: another selection loss.
  del b["passage_mask"]
  assert abs(float(f(b)["select_loss"]) - float(without["select_loss"])) > 1e-4
