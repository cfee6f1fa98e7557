"""Length buckets: the bucket function, batches padded to buckets, and exactness of bucketed
steps against the same batch padded to the maximum (loss, gradients, embeddings)."""
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from dpr_jax.data import buckets
from dpr_jax.data.examples import Dataset, Example, Passage, TrainBatches, global_batch_arrays, \
    tokenize_batch
from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder
from dpr_jax.training import sharding, steps
from dpr_jax.training.inference import embed, embed_bucketed
from dpr_jax.training.loss import in_batch_nll

CFG = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=64,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def test_bucket_length_by_hand():
  assert [buckets.bucket_length(n, 32, 256) for n in (1, 31, 32, 33, 200, 250, 256)] == [
      32, 32, 32, 64, 224, 256, 256]
  assert buckets.bucket_length(70, 32, 80) == 80  # capped at the maximum
  assert buckets.bucket_length(5, 0, 256) == 256  # 0: pad to the maximum
  with pytest.raises(ValueError, match="exceeds the maximum"):
    buckets.bucket_length(300, 32, 256)
  mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
  assert buckets.padding_fraction(mask) == 4 / 8


def test_tokenize_batch_pads_each_side_to_its_bucket(minilm_path):
  from transformers import AutoTokenizer
  from dpr_jax.models.tokenization import Tokenizer
  tok = Tokenizer(minilm_path, 64, 128)
  hf = AutoTokenizer.from_pretrained(str(minilm_path))
  qs = ["who wrote hamlet?", "what is the capital city of the country of france in europe?"]
  ps = [Passage("", "word " * n) for n in (3, 40, 10, 5)]
  b = tokenize_batch(tok, qs, ps, 64, 128, bucket_multiple=16)
  q_longest = max(len(hf(q)["input_ids"]) for q in qs)
  assert b["q_ids"].shape == (2, -(-q_longest // 16) * 16)
  assert b["p_ids"].shape == (4, 48)  # [CLS] + 40 words + [SEP] = 42 tokens -> 48
  for i, q in enumerate(qs):
    want = hf(q)["input_ids"]
    np.testing.assert_array_equal(b["q_ids"][i, :len(want)], want)
    assert b["q_mask"][i].sum() == len(want) and not b["q_ids"][i, len(want):].any()
  full = tokenize_batch(tok, qs, ps, 64, 128, bucket_multiple=0)
  assert full["q_ids"].shape == (2, 64) and full["p_ids"].shape == (4, 128)


def _dataset(lengths, seed=0):
  r = np.random.default_rng(seed)
  words = lambda n: " ".join(r.choice(["red", "blue", "green", "river"], n))
  ex = [Example(words(n) + "?", ("x",), (Passage("t", words(3 * n)),),
                (Passage("t", words(n + 1)),), ()) for n in lengths]
  return Dataset("mem", ex, 0)


def test_every_process_pads_to_the_global_batch_buckets(minilm_path):
  """Each process keeps its rows of the global batch, padded to the lengths of the whole global
  batch, whichever process holds its longest rows."""
  from dpr_jax.models.tokenization import Tokenizer
  tok = Tokenizer(minilm_path, 64, 128)
  tb = TrainBatches([_dataset([1, 1, 1, 1, 28, 1, 1, 1])], [1.0], 8, 1, seed=3)
  whole, stats = global_batch_arrays(tb, tok, 0, 64, 128, 16)
  parts = [global_batch_arrays(tb, tok, 0, 64, 128, 16, i, 4)[0] for i in range(4)]
  for k in whole:
    assert {p[k].shape[1:] for p in parts} == {whole[k].shape[1:]}
    np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
  qs, ps = tb.batch(0)  # an independent count of real tokens
  real_q = sum(len(tok.hf(q)["input_ids"]) for q in qs)
  assert stats["q_padding"] == pytest.approx(1 - real_q / whole["q_mask"].size)
  assert whole["q_ids"].shape[1] == 32  # the 28-word question: 28 words + '?' + 2 specials
  # Processes whose own questions would fit 16 tokens still pad to the global 32.
  assert sum(p["q_mask"].sum(1).max() <= 16 for p in parts) == 3


def _model(tied):
  return DualEncoder(Encoder(CFG, rngs=nnx.Rngs(0)),
                     None if tied else Encoder(CFG, rngs=nnx.Rngs(1)))


def _padded_batch(b, lq, lp, seed=0):
  """Random real lengths (at most 12 / 20 tokens), padded to lq / lp."""
  r = np.random.default_rng(seed)
  def side(n, l, longest):
    lengths = r.integers(2, longest + 1, n)
    mask = (np.arange(l)[None] < lengths[:, None]).astype(np.int32)
    return r.integers(1, CFG.vocab_size, (n, l)).astype(np.int32) * mask, mask
  q_ids, q_mask = side(b, lq, 12)
  p_ids, p_mask = side(2 * b, lp, 20)
  return {"q_ids": q_ids, "q_mask": q_mask, "p_ids": p_ids, "p_mask": p_mask}


def _cut(batch, lq, lp):
  return {k: v[:, :lq if k[0] == "q" else lp] for k, v in batch.items()}


def _loss_and_grads(n_devices, chunk, batch):
  mesh = sharding.make_mesh(devices=jax.devices()[:n_devices])
  graphdef, state = nnx.split(_model(tied=n_devices == 8))
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  loss_fn = sharding.gathered_loss(lambda q, p, axis_name: in_batch_nll(
      q, p, similarity="dot", temperature=1.0, axis_name=axis_name), mesh)
  f = jax.jit(steps.make_loss_and_grads(graphdef, mesh, loss_fn, chunk))
  (loss, _), grads = f(params, sharding.host_to_global(batch, mesh), jax.random.key(7))
  return float(loss), np.concatenate([np.ravel(x) for x in jax.tree.leaves(grads)])


@pytest.mark.parametrize("n_devices,chunk", [(1, 2), (8, 0), (8, 1)])
def test_bucketed_loss_and_gradients_equal_padded_to_max(n_devices, chunk):
  if jax.device_count() < n_devices:
    pytest.skip(f"needs {n_devices} devices")
  full = _padded_batch(8 if n_devices == 1 else 16, 48, 64)
  loss, grads = _loss_and_grads(n_devices, chunk, full)
  loss_b, grads_b = _loss_and_grads(n_devices, chunk, _cut(full, 16, 32))
  assert abs(loss_b - loss) <= 1e-5 * abs(loss)
  assert np.linalg.norm(grads_b - grads) <= 1e-5 * np.linalg.norm(grads)
  assert np.linalg.norm(grads) > 0


def test_embed_bucketed_equals_embed_padded_to_max():
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  graphdef, state = nnx.split(_model(tied=True))
  params = nnx.to_pure_dict(state)
  f = steps.make_encode(graphdef, "passage")
  b = _padded_batch(20, 48, 64, seed=1)
  want = embed(f, params, b["p_ids"], b["p_mask"], 8, mesh)
  got = embed_bucketed(f, params, b["p_ids"], b["p_mask"], 8, mesh, 8)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_train_step_compiles_once_per_bucket_pair():
  """Batches of the same bucket lengths reuse the compiled step; only a new pair of lengths
  compiles again."""
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  graphdef, state = nnx.split(_model(tied=True))
  schedule = optax.constant_schedule(1e-3)
  tx = steps.make_optimizer(schedule, weight_decay=0.0, clip_norm=1.0)
  shard = nnx.to_pure_dict(sharding.param_shardings(state, mesh))
  st, st_shard = steps.place_state(jax.device_put(nnx.to_pure_dict(state), shard), tx, 0, mesh,
                                   shard)
  step = steps.make_train_step(graphdef, tx, schedule, mesh, similarity="dot", temperature=1.0,
                               state_shardings=st_shard)
  for seed, (lq, lp) in enumerate([(16, 32), (16, 32), (32, 32), (16, 64), (32, 32)]):
    st, m = step(st, sharding.host_to_global(_cut(_padded_batch(8, 48, 64, seed), lq, lp), mesh))
    assert np.isfinite(float(m["train/loss"]))
  assert step._cache_size() == 3


def test_reader_batch_bucketed_gives_the_loss_of_the_padded_batch(minilm_path):
  """Reader inputs padded to a bucket: same span positions and the same marginal loss as the
  batch padded to the maximum."""
  from dpr_jax.models.reader import Reader, reader_loss
  from dpr_jax.reader import data as reader_data
  tok = reader_data.ReaderTokenizer(minilm_path, max_length=64, question_max_length=16)
  exs = reader_data.examples_from_results([{
      "question": f"where is the {w} river?", "answers": [w],
      "ctxs": [{"title": "Rivers", "text": f"The {w} river flows north.", "has_answer": True},
               {"title": "Hills", "text": "Hills are high " * (i + 1), "has_answer": False}]}
      for i, w in enumerate(["nile", "rhine", "amazon"])])
  batch = lambda multiple: reader_data.train_batch(
      exs, [0, 1, 2], np.random.default_rng(0), tok, questions=3, passages=2,
      bucket_multiple=multiple)[0]
  full, cut = batch(0), batch(8)
  longest = int(full["attention_mask"].sum(-1).max())
  assert full["input_ids"].shape[-1] == 64
  assert cut["input_ids"].shape[-1] == -(-longest // 8) * 8 < 64
  for k in ("span_start", "span_end", "span_mask"):
    np.testing.assert_array_equal(cut[k], full[k])
  model = Reader(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=4, intermediate_size=64,
                            max_position_embeddings=64, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0), rngs=nnx.Rngs(0))
  def loss(b):
    start, end, select = model(b["input_ids"], b["attention_mask"])
    return float(reader_loss(start, end, select, b["text_mask"], b["span_start"], b["span_end"],
                             b["span_mask"])["loss"])
  assert abs(loss(cut) - loss(full)) <= 1e-5 * abs(loss(full))


def test_group_questions_by_hand():
  """Examples sorted by question length (passages follow their question); each group padded to
  its own bucket."""
  q_len = np.array([5, 2, 7, 3])
  q_mask = (np.arange(8)[None] < q_len[:, None]).astype(np.int32)
  q_ids = (np.arange(4)[:, None] + 1) * q_mask
  p_ids = np.arange(8)[:, None] * np.ones((1, 3), np.int32)
  b = {"q_ids": q_ids, "q_mask": q_mask, "p_ids": p_ids, "p_mask": np.ones((8, 3), np.int32)}
  g = buckets.group_questions(b, 2, 2, 4, 8)
  assert g["q_ids_0"].shape == (2, 4) and g["q_ids_1"].shape == (2, 8)
  assert g["q_ids_0"][:, 0].tolist() == [2, 4] and g["q_ids_1"][:, 0].tolist() == [1, 3]
  assert g["p_ids"][:, 0].tolist() == [2, 3, 6, 7, 0, 1, 4, 5]
  assert [m.sum(1).tolist() for _, m in buckets.question_groups(g)] == [[2, 3], [5, 7]]
  with pytest.raises(ValueError, match="does not split into 3 question groups"):
    buckets.group_questions(b, 3, 2, 4, 8)


@pytest.mark.parametrize("n_devices,groups", [(1, 4), (8, 2)])
def test_question_groups_loss_and_gradients_equal_sorted_batch_padded_to_max(n_devices, groups):
  """Grouped questions give the loss and gradients of the same examples, in length order, with
  every question padded to the maximum."""
  if jax.device_count() < n_devices:
    pytest.skip(f"needs {n_devices} devices")
  full = _padded_batch(16, 48, 64, seed=2)
  ref = buckets.group_questions(full, 1, 2, 0, 48)       # length order, padded to 48
  assert ref["q_ids_0"].shape == (16, 48)
  grouped = buckets.group_questions(full, groups, 2, 8, 48)
  assert max(m.shape[1] for _, m in buckets.question_groups(grouped)) < 48
  loss, grads = _loss_and_grads(n_devices, 0, ref)
  loss_g, grads_g = _loss_and_grads(n_devices, 0, grouped)
  assert abs(loss_g - loss) <= 1e-5 * abs(loss)
  assert np.linalg.norm(grads_g - grads) <= 1e-5 * np.linalg.norm(grads)
  # an independent check that reordering examples keeps the in-batch loss: the unsorted batch
  loss_unsorted, _ = _loss_and_grads(n_devices, 0, full)
  assert abs(loss_unsorted - loss) <= 1e-5 * abs(loss)


def test_every_process_keeps_its_rows_of_each_question_group(minilm_path):
  from dpr_jax.models.tokenization import Tokenizer
  tok = Tokenizer(minilm_path, 64, 128)
  tb = TrainBatches([_dataset([1, 9, 2, 30, 3, 1, 12, 2])], [1.0], 8, 1, seed=3)
  whole, stats = global_batch_arrays(tb, tok, 0, 64, 128, 32, question_groups=2,
                                     question_multiple=8)
  parts = [global_batch_arrays(tb, tok, 0, 64, 128, 32, i, 2, 2, 8)[0] for i in range(2)]
  for k in whole:
    np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
  qs, _ = tb.batch(0)
  lengths = sorted(len(tok.hf(q)["input_ids"]) for q in qs)
  fed = 4 * (-(-lengths[3] // 8) * 8) + 4 * (-(-lengths[7] // 8) * 8)
  assert whole["q_ids_0"].shape[1] == -(-lengths[3] // 8) * 8
  assert stats["q_padding"] == pytest.approx(1 - sum(lengths) / fed)
  with pytest.raises(ValueError, match="2 processes x 3 question groups"):
    global_batch_arrays(tb, tok, 0, 64, 128, 32, 0, 2, 3, 8)
