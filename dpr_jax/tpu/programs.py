"""The programs the tools jit, built on abstract inputs for any mesh: no weights, no data.

Each builder returns a `Program`: the jitted function exactly as the tool builds it (same step
factory, shardings and donation) and `jax.ShapeDtypeStruct` arguments carrying their shardings,
ready for `fn.lower(*args).compile()`. Parameter shapes come from `nnx.eval_shape` of the
model factories with the BERT configuration of `model.init` (read from its config.json, or the
copy of bert-base-uncased's shipped here); batches are built by the data code that feeds the
loops (`data.examples.global_batch_arrays`, `reader.data.pad_inputs`) from synthetic examples
whose every text fills the maximum length, so the abstract batch is the loop's batch at its
largest bucket.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dpr_jax.data import buckets
from dpr_jax.data import examples as data
from dpr_jax.models.bert import BertConfig
from dpr_jax.training import sharding, steps

SHIPPED = {"bert-base-uncased": Path(__file__).with_name("bert-base-uncased.json")}


@dataclasses.dataclass
class Program:
  name: str                  # train / encode / reader / search
  fn: Callable               # jitted
  args: tuple                # ShapeDtypeStructs with shardings
  flops: float               # analytic FLOPs of one call, whole mesh
  shapes: dict               # what the call processes (batch, lengths, rows)


def bert_config(mc) -> BertConfig:
  """The architecture of `model.init` without its weights: `random` (model.bert overrides),
  `minilm`, a training workdir, a Hugging Face / DPR folder, a shipped config (bert-base-uncased),
  or a hub name already in the local Hugging Face cache."""
  from dpr_jax.models import hf
  from dpr_jax.training import loading
  init = mc.init
  if init == "random":
    return BertConfig(**dict(mc.bert))
  if init in SHIPPED:
    return hf.bert_config(json.loads(SHIPPED[init].read_text()), str(SHIPPED[init]))
  if init == "minilm":
    from dpr_jax.data import resources
    return hf.bert_config(hf.read_config(resources.minilm_path()))
  if loading._is_workdir(init):
    return BertConfig(**loading.read_spec(init)["bert"])
  path = Path(init).expanduser()
  pair = hf.dpr_pair(init)
  if pair is not None:
    path = pair[0]
  if not path.is_dir():
    from huggingface_hub import try_to_load_from_cache
    cached = try_to_load_from_cache(init, "config.json")
    if not isinstance(cached, str):
      raise ValueError(f"model.init {init!r}: expected a local model folder, a name in "
                       f"{sorted(SHIPPED)} or a hub name in the local cache; found none "
                       "(compiling downloads nothing)")
    path = Path(cached).parent
  return hf.bert_config(hf.read_config(path), str(path / "config.json"))


def _random_init(config):
  """-> (BertConfig, a copy of `config` whose model is a `random` BERT of that architecture):
  the model factory then builds the same modules without reading weights."""
  import ml_collections
  cfg = bert_config(config.model)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.init = "random"
    config.model.bert = ml_collections.ConfigDict(cfg.to_hf())
    config.model.attention = tpu_attention(config.model.attention)
  return cfg, config


def tpu_attention(name: str) -> str:
  """`auto` resolves on the host that traces the program (a CPU here): pin what it selects on
  a TPU (`models.bert.auto_attention`)."""
  from dpr_jax.models.bert import auto_attention
  return auto_attention("tpu") if name == "auto" else name


def _optimizer(config):
  oc = config.optim
  schedule = steps.make_schedule(oc.lr, oc.warmup_steps, max(config.train.max_steps, 1000))
  tx = steps.make_optimizer(schedule, weight_decay=oc.weight_decay, clip_norm=oc.clip_norm,
                            b1=oc.b1, b2=oc.b2, eps=oc.eps)
  return schedule, tx


def _abstract_state(model, config, mesh, tx):
  """(graphdef, abstract params, abstract training state with its shardings, their shardings),
  as `training.harness.setup` places them."""
  graphdef, state_ = nnx.split(model)
  shard = nnx.to_pure_dict(sharding.param_shardings(state_, mesh))
  params = nnx.to_pure_dict(state_)
  params = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
                        params, shard)
  seed = config.train.seed
  shape = jax.eval_shape(lambda p: steps.init_state(p, tx, seed), params)
  state_shard = sharding.state_shardings(shape, shard, mesh)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       shape, state_shard)
  return graphdef, params, state, state_shard


def _abstract(arrays: dict, s) -> dict:
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s) for k, v in arrays.items()}


class FullTokenizer:
  """The tokenizer interface of `data.examples.tokenize_batch` giving every text the maximum
  length: the batch of the largest bucket."""
  pad_id = 0

  def _full(self, n, max_length, **_):
    return {"input_ids": np.ones((n, max_length), np.int32),
            "attention_mask": np.ones((n, max_length), np.int32)}

  def questions(self, questions, max_length, **kw):
    return self._full(len(questions), max_length)

  def passages(self, titles, texts, max_length, **kw):
    return self._full(len(texts), max_length)


def retriever_batch(config, global_batch: int) -> dict[str, np.ndarray]:
  """The global batch the retriever's loop feeds its step, at the maximum lengths."""
  dc = config.data
  psg = lambda i, j: data.Passage(f"t{i}", f"passage {i} {j}", f"{i}-{j}")
  exs = [data.Example(f"question {i}", ("a",), (psg(i, 0),),
                      tuple(psg(i, j) for j in range(1, dc.num_hard_negatives + 1)), ())
         for i in range(global_batch)]
  batches = data.TrainBatches([data.Dataset("synthetic", exs, 0)], [1.0], global_batch,
                              dc.num_hard_negatives, config.train.seed)
  b, _ = data.global_batch_arrays(batches, FullTokenizer(), 0, dc.question_max_length,
                                  dc.passage_max_length, dc.bucket_multiple, 0, 1,
                                  dc.question_groups, dc.question_bucket_multiple)
  return b


def _encoder_flops(cfg: BertConfig, rows: int, length: int, passes: int) -> float:
  """`passes` x 2 FLOPs per multiply-add of a BERT's matrices (embeddings are lookups) and its
  attention (QK^T and PV) over `rows` sequences of `length` (forward 1 pass, training 3)."""
  h, f, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
  matrices = n * (4 * h * h + 2 * h * f)   # multiply-adds per token
  attention = n * 2 * length * h           # QK^T and PV: multiply-adds per token
  return passes * 2 * rows * length * (matrices + attention)


def train_program(config, mesh, global_batch: int | None = None) -> Program:
  """The retriever's train step (`steps.make_train_step`, as `training.loop.train` builds it)."""
  from dpr_jax.training import loop
  tc, lc, dc = config.train, config.loss, config.data
  b = global_batch or tc.global_batch
  n_dev = sharding.batch_size_multiple(mesh)
  if b % (n_dev * dc.question_groups):
    raise ValueError(f"train.global_batch (or --global_batch): expected a multiple of the "
                     f"device count {n_dev} x data.question_groups {dc.question_groups}, "
                     f"found {b}")
  cfg, config = _random_init(config)
  model = nnx.eval_shape(lambda: loop._model(config))
  schedule, tx = _optimizer(config)
  graphdef, _, state, state_shard = _abstract_state(model, config, mesh, tx)
  fn = steps.make_train_step(graphdef, tx, schedule, mesh, similarity=lc.similarity,
                             temperature=lc.temperature, grad_cache_chunk=tc.grad_cache_chunk,
                             state_shardings=state_shard)
  batch = retriever_batch(config, b)
  passes = 4 if tc.grad_cache_chunk else 3  # GradCache encodes twice
  q = sum(_encoder_flops(cfg, ids.shape[0], ids.shape[1], passes)
          for ids, _ in buckets.question_groups(batch))
  p = _encoder_flops(cfg, *batch["p_ids"].shape, passes)
  shapes = {"global_batch": b, "passages": int(batch["p_ids"].shape[0]),
            "q_len": [int(ids.shape[1]) for ids, _ in buckets.question_groups(batch)],
            "p_len": int(batch["p_ids"].shape[1]), "dtype": config.model.dtype,
            "grad_cache_chunk": tc.grad_cache_chunk, "question_groups": dc.question_groups}
  return Program("train", fn, (state, _abstract(batch, sharding.batch_sharding(mesh))),
                 q + p, shapes)


def encode_program(config, mesh, batch_size: int = 64, max_length: int = 256) -> Program:
  """The passage-encoding step of `encode.py` (`steps.make_encode`, parameters replicated, the
  batch split over the devices as `training.inference.embed` does)."""
  from dpr_jax.training import loop
  cfg, config = _random_init(config)
  model = nnx.eval_shape(lambda: loop._model(config))
  graphdef, state_ = nnx.split(model)
  rep = sharding.replicated(mesh)
  params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=rep),
                        nnx.to_pure_dict(state_))
  n_dev = sharding.batch_size_multiple(mesh)
  b = -(-batch_size // n_dev) * n_dev
  ids, mask = buckets.pad_to(np.ones((b, max_length), np.int32), np.ones((b, max_length),
                                                                         np.int32), max_length)
  s = sharding.batch_sharding(mesh)
  args = (params, *(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s) for x in (ids, mask)))
  return Program("encode", steps.make_encode(graphdef, "passage"), args,
                 _encoder_flops(cfg, b, max_length, 1),
                 {"batch": b, "length": max_length, "dtype": config.model.dtype})


def reader_program(reader_config, mesh) -> Program:
  """The reader's train step (`reader.train.make_step`) on a batch of `train.batch_questions`
  x `data.passages_per_question` inputs of `data.max_length` tokens."""
  from dpr_jax.reader import data as reader_data
  from dpr_jax.reader import train as reader_train
  from dpr_jax.training.loading import build_reader
  mc, dc, tc = reader_config.model, reader_config.data, reader_config.train
  cfg = bert_config(mc)
  model = nnx.eval_shape(lambda: build_reader("random", dtype=mc.dtype, remat=mc.remat,
                                              attention=tpu_attention(mc.attention),
                                              bert=cfg.to_hf()))
  schedule, tx = _optimizer(reader_config)
  graphdef, _, state, state_shard = _abstract_state(model, reader_config, mesh, tx)
  fn = reader_train.make_step(graphdef, tx, schedule, mesh, state_shard)
  n, m, length = tc.batch_questions, dc.passages_per_question, dc.max_length
  enc = reader_data.Encoded([1] * length, 1, length - 1, [], "", "")
  batch = reader_data.pad_inputs([[enc] * m for _ in range(n)], length)
  spans = inspect.signature(reader_data.train_batch).parameters["max_spans"].default
  batch.update({k: np.zeros((n, spans), np.int32) for k in ("span_start", "span_end",
                                                             "span_mask")})
  return Program("reader", fn, (state, _abstract(batch, sharding.batch_sharding(mesh))),
                 _encoder_flops(cfg, n * m, length, 3),
                 {"questions": n, "passages": m, "length": length, "dtype": mc.dtype})


def search_program(mesh, rows: int, dim: int, dtype: str = "float16", queries: int = 512,
                   k: int = 100, chunk: int = 16384) -> Program:
  """`retrieval.mesh_index`'s exact search of a `queries` batch over `rows` x `dim` embeddings
  stored in `dtype`, laid out as `mesh_index.from_array` / `load` lay them out."""
  from dpr_jax.retrieval import mesh_index
  n_dev = mesh.devices.size
  per_dev, c = mesh_index.layout(rows, n_dev, chunk)
  fn = mesh_index._search_fn(mesh, rows, c, min(k, rows), False, 0.95, "highest")
  q = jax.ShapeDtypeStruct((queries, dim), jnp.float32, sharding=sharding.replicated(mesh))
  emb = jax.ShapeDtypeStruct((per_dev * n_dev, dim), mesh_index.DTYPES[dtype],
                             sharding=sharding.batch_sharding(mesh))
  return Program("search", fn, (q, emb), 2.0 * queries * rows * dim,
                 {"queries": queries, "rows": rows, "dim": dim, "dtype": dtype, "k": k,
                  "rows_per_device": per_dev, "chunk": c})
