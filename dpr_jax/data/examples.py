"""DPR retriever training data: streaming readers, deterministic epochs, per-host batches.

A training file is DPR's JSON list or JSON-lines (optionally .gz) of
`{question, answers, positive_ctxs: [{title, text, passage_id?}], negative_ctxs, hard_negative_ctxs}`.
Files are read record by record (DPR's NQ file is several GB). Records without a positive are
skipped and counted, as DPR does; a malformed record is a `DataError` naming file and record.

The order of an epoch is a pure function of (seed, epoch), and a batch a pure function of
(seed, step): a run resumed at any step sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterator, Sequence

import numpy as np

from dpr_jax.data import buckets
from dpr_jax.data.textio import DataError, open_text  # noqa: F401 (re-exported)


@dataclasses.dataclass(frozen=True)
class Passage:
  title: str
  text: str
  pid: str | None = None


@dataclasses.dataclass(frozen=True)
class Example:
  question: str
  answers: tuple[str, ...]
  positives: tuple[Passage, ...]
  hard_negatives: tuple[Passage, ...]
  negatives: tuple[Passage, ...]


def _iter_json_array(f, path) -> Iterator[tuple[int, object]]:
  """Streams the elements of a top-level JSON array without loading the file whole."""
  dec = json.JSONDecoder()
  buf, n = f.read(1 << 20), 0
  pos = buf.index("[") + 1
  while True:
    while True:  # skip whitespace and commas, refilling the buffer as needed
      while pos < len(buf) and buf[pos] in " \t\r\n,":
        pos += 1
      if pos < len(buf):
        break
      more = f.read(1 << 20)
      if not more:
        raise DataError(f"{path}: JSON array not closed after record {n}")
      buf, pos = more, 0
    if buf[pos] == "]":
      return
    while True:
      try:
        obj, end = dec.raw_decode(buf, pos)
        break
      except json.JSONDecodeError as e:
        more = f.read(1 << 20)
        if not more:
          raise DataError(f"{path}: record {n + 1}: expected a JSON record, found malformed "
                          f"JSON ({e.msg})") from e
        buf, pos = buf[pos:] + more, 0
    n += 1
    yield n, obj
    buf, pos = buf[end:], 0


def iter_records(path) -> Iterator[tuple[int, object]]:
  """(record number from 1, parsed JSON) for a JSON-list or JSON-lines file."""
  with open_text(path) as f:
    head = f.read(4096)
    first = head.lstrip()[:1]
    f.seek(0)
    if first == "[":
      yield from _iter_json_array(f, path)
      return
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        yield n, json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {n}: expected a JSON record, found malformed JSON "
                        f"({e.msg})") from e


def _passages(rec, key, where, required=False) -> tuple[Passage, ...]:
  ctxs = rec.get(key, [] if not required else None)
  if ctxs is None:
    raise DataError(f"{where}: expected a list field {key!r}, found none")
  if not isinstance(ctxs, list):
    raise DataError(f"{where}: field {key!r} must be a list, got {type(ctxs).__name__}")
  out = []
  for j, c in enumerate(ctxs):
    if not isinstance(c, dict) or not isinstance(c.get("text"), str):
      raise DataError(f"{where}: {key}[{j}] must be an object with a string 'text'")
    if not c["text"].strip():
      raise DataError(f"{where}: {key}[{j}] has an empty 'text'")
    pid = c.get("passage_id", c.get("psg_id", c.get("id")))
    out.append(Passage(str(c.get("title") or ""), c["text"], None if pid is None else str(pid)))
  return tuple(out)


def parse_example(rec, where: str, keep_negatives: int) -> Example | None:
  """One DPR record -> Example (None when it has no positive). `where` names it in errors."""
  if not isinstance(rec, dict):
    raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
  q = rec.get("question")
  if not isinstance(q, str) or not q.strip():
    raise DataError(f"{where}: expected a non-empty string field 'question', found {q!r:.40}")
  answers = rec.get("answers", [])
  if not isinstance(answers, list):
    raise DataError(f"{where}: field 'answers' must be a list")
  pos = _passages(rec, "positive_ctxs", where, required=True)
  if not pos:
    return None
  return Example(q, tuple(str(a) for a in answers), pos,
                 _passages(rec, "hard_negative_ctxs", where)[:keep_negatives],
                 _passages(rec, "negative_ctxs", where)[:keep_negatives])


@dataclasses.dataclass
class Dataset:
  path: str
  examples: list[Example]
  skipped_no_positive: int


def load_dataset(path, keep_negatives: int = 8, max_examples: int | None = None) -> Dataset:
  """Streams a DPR training file, keeping at most `keep_negatives` of each negative kind."""
  examples, skipped = [], 0
  for n, rec in iter_records(path):
    ex = parse_example(rec, f"{path}: record {n}", keep_negatives)
    if ex is None:
      skipped += 1
    else:
      examples.append(ex)
      if max_examples and len(examples) >= max_examples:
        break
  if not examples:
    found = f"{skipped} records, none with a positive" if skipped else "no record"
    raise DataError(f"{path}: expected DPR training records with positive_ctxs, found {found}")
  return Dataset(str(path), examples, skipped)


class TrainBatches:
  """Deterministic global batches from one or several weighted datasets.

  An epoch draws `round(weight * len)` examples from each dataset (without replacement while
  weight <= 1; whole passes plus a remainder above it), shuffled together by (seed, epoch).
  Each example contributes its question, one positive (the first, as DPR, unless
  `shuffle_positives`), and `num_hard_negatives` passages: its hard negatives in a per-epoch
  random order, then its other negatives, then positives of random other examples (counted in
  `filled_negatives`) so that every batch has a fixed shape. A passage can occur several times
  in one batch (a filler that is another question's positive, an example drawn twice when its
  weight exceeds 1, two questions on one paragraph): the loss masks every copy of a question's
  positive out of that question's negatives (`passage_keys`).
  """

  def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float], global_batch: int,
               num_hard_negatives: int, seed: int, shuffle_positives: bool = False):
    if len(datasets) != len(weights):
      raise ValueError(f"{len(datasets)} datasets but {len(weights)} weights")
    self.datasets, self.weights = list(datasets), [float(w) for w in weights]
    self.global_batch, self.num_hard_negatives = global_batch, num_hard_negatives
    self.seed, self.shuffle_positives = seed, shuffle_positives
    self.epoch_size = sum(int(round(w * len(d.examples))) for d, w in zip(datasets, weights))
    self.steps_per_epoch = self.epoch_size // global_batch
    if self.steps_per_epoch == 0:
      raise ValueError(f"an epoch has {self.epoch_size} examples, fewer than the global batch "
                       f"{global_batch}")
    self._order_epoch, self._order = None, None
    self.filled_negatives = 0

  def epoch_order(self, epoch: int) -> np.ndarray:
    """[epoch_size, 2] (dataset, example) pairs in this epoch's order."""
    if self._order_epoch != epoch:
      rng = np.random.default_rng([self.seed, epoch])
      parts = []
      for i, (d, w) in enumerate(zip(self.datasets, self.weights)):
        n, count = len(d.examples), int(round(w * len(d.examples)))
        idx = np.concatenate([rng.permutation(n) for _ in range(count // n)]
                             + [rng.permutation(n)[: count % n]])
        parts.append(np.stack([np.full(count, i), idx], axis=1))
      order = np.concatenate(parts)
      self._order, self._order_epoch = order[rng.permutation(len(order))], epoch
    return self._order

  def position(self, step: int) -> tuple[int, int]:
    """Global step -> (epoch, batch index within the epoch)."""
    return divmod(step, self.steps_per_epoch)

  def _example_passages(self, epoch: int, ds: int, idx: int) -> list[Passage]:
    ex = self.datasets[ds].examples[idx]
    rng = np.random.default_rng([self.seed, epoch, ds, idx])
    pos = ex.positives[rng.integers(len(ex.positives))] if self.shuffle_positives else ex.positives[0]
    negs = [ex.hard_negatives[j] for j in rng.permutation(len(ex.hard_negatives))]
    negs += [ex.negatives[j] for j in rng.permutation(len(ex.negatives))]
    negs = negs[: self.num_hard_negatives]
    examples = self.datasets[ds].examples
    while len(negs) < self.num_hard_negatives:
      other = examples[rng.integers(len(examples))]
      if other is not ex:
        negs.append(other.positives[0])
        self.filled_negatives += 1
    return [pos] + negs

  def batch(self, step: int, process_index: int = 0, process_count: int = 1):
    """This process's contiguous slice of global batch `step`: (questions, passages), with
    passages question-major (1 + num_hard_negatives each)."""
    if self.global_batch % process_count:
      raise ValueError(f"global batch {self.global_batch} not divisible by {process_count} processes")
    epoch, i = self.position(step)
    order = self.epoch_order(epoch)[i * self.global_batch:(i + 1) * self.global_batch]
    per = self.global_batch // process_count
    questions, passages = [], []
    for ds, idx in order[process_index * per:(process_index + 1) * per]:
      questions.append(self.datasets[ds].examples[idx].question)
      passages.extend(self._example_passages(epoch, int(ds), int(idx)))
    return questions, passages


def same_passage(a: Passage, b: Passage) -> bool:
  """One passage twice: the same id, or the same title and text (identical inputs)."""
  return (a.pid is not None and a.pid == b.pid) or (a.title, a.text) == (b.title, b.text)


def passage_keys(passages: Sequence[Passage]) -> np.ndarray:
  """[N] int32: for each passage, the index of the first passage of the list that is the same
  passage (`same_passage`, closed transitively). Two passages of a batch are one passage iff
  their keys are equal; the loss masks such copies of a question's positive (`loss.in_batch_nll`)."""
  parent = list(range(len(passages)))
  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i
  first: dict = {}
  for i, p in enumerate(passages):
    for key in (("text", p.title, p.text),) + ((("id", p.pid),) if p.pid is not None else ()):
      j = first.setdefault(key, i)
      a, b = root(i), root(j)
      parent[max(a, b)] = min(a, b)
  return np.array([root(i) for i in range(len(passages))], np.int32)


def tokenize_batch(tokenizer, questions: Sequence[str], passages: Sequence[Passage],
                   q_len: int, p_len: int, bucket_multiple: int = 0) -> dict[str, np.ndarray]:
  """-> {q_ids, q_mask: [b, Lq], p_ids, p_mask: [b*(1+H), Lp], p_key: [b*(1+H)]} int32: the
  arrays of a training batch (`global_batch_arrays` adds question groups). Lq, Lp: the longest
  question / passage rounded up to a multiple of `bucket_multiple` (at most q_len / p_len);
  `bucket_multiple` = 0: exactly q_len / p_len (one shape). p_key: `passage_keys(passages)`."""
  q = tokenizer.questions(questions, max_length=q_len, pad_to_max=False, pad_multiple=1)
  p = tokenizer.passages([x.title for x in passages], [x.text for x in passages],
                         max_length=p_len, pad_to_max=False, pad_multiple=1)
  out = {}
  for side, t, max_len in (("q", q, q_len), ("p", p, p_len)):
    length = buckets.bucket_lengths_of(t["attention_mask"], bucket_multiple, max_len)
    out[f"{side}_ids"], out[f"{side}_mask"] = buckets.pad_to(
        t["input_ids"], t["attention_mask"], length, tokenizer.pad_id)
  out["p_key"] = passage_keys(passages)
  return out


def global_batch_arrays(batches: TrainBatches, tokenizer, step: int, q_len: int, p_len: int,
                        bucket_multiple: int, process_index: int = 0, process_count: int = 1,
                        question_groups: int = 1, question_multiple: int = 0):
  """This process's rows of global batch `step`, tokenised, and the global batch's padding
  fractions {q_padding, p_padding} (tokens padded / tokens fed).

  Every process tokenises the whole global batch (a pure function of (seed, step)) so that all
  agree on its bucket lengths, then keeps its contiguous slice of each array, as
  `TrainBatches.batch` does. `question_groups` > 1: the examples sorted by question length and
  the questions in that many groups, each padded to its own multiple of `question_multiple`
  (default `bucket_multiple`), `buckets.group_questions`."""
  if batches.global_batch % (process_count * question_groups):
    raise ValueError(f"global batch {batches.global_batch} not divisible by {process_count} "
                     f"processes x {question_groups} question groups")
  qs, ps = batches.batch(step)
  b = tokenize_batch(tokenizer, qs, ps, q_len, p_len, bucket_multiple)
  if question_groups > 1:
    b = buckets.group_questions(b, question_groups, 1 + batches.num_hard_negatives,
                                question_multiple or bucket_multiple, q_len)
  q_masks = np.concatenate([m.ravel() for _, m in buckets.question_groups(b)])
  stats = {"q_padding": buckets.padding_fraction(q_masks[None]),
           "p_padding": buckets.padding_fraction(b["p_mask"])}
  local = {}
  for k, v in b.items():
    per = len(v) // process_count
    local[k] = v[process_index * per:(process_index + 1) * per]
  return local, stats


def validation_set(examples: Sequence[Example]):
  """For DPR's average-rank validation: the questions, the distinct passages (positives and
  hard negatives of all questions, by id or by text) and each question's positive index."""
  passages, index = [], {}
  def add(p):
    key = p.pid or (p.title, p.text)
    if key not in index:
      index[key] = len(passages)
      passages.append(p)
    return index[key]
  positive = np.array([add(ex.positives[0]) for ex in examples], np.int32)
  for ex in examples:
    for p in ex.hard_negatives:
      add(p)
  return [ex.question for ex in examples], passages, positive
