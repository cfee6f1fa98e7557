"""A reader loaded once and asked many times: the answers behind `python -m dpr_jax.serve`.

  hits = Searcher(...).search(["who wrote hamlet?"], 10)
  Answerer("runs/reader").answer(["who wrote hamlet?"], hits)

Each answer carries the character span [start, end) of the span that was read, in the passage it
was read from (`passage[start:end] == text`), so that a page can mark exactly that span.
"""
from __future__ import annotations

import threading


class Answerer:
  """A reader training workdir, loaded and compiled once: reads retrieved passages and
  returns the best answer span of each question. Calls are serialised by a lock."""

  def __init__(self, reader_dir, which: str = "best", max_answer_length: int = 10,
               batch_questions: int = 1):
    import jax
    from flax import nnx
    from dpr_jax.reader.predict import make_forward
    from dpr_jax.reader.train import load_reader
    from dpr_jax.training import sharding
    model, self.tok, self.step = load_reader(reader_dir, which)
    graphdef, state = nnx.split(model)
    self.mesh = sharding.make_mesh(devices=jax.local_devices())
    self.params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(self.mesh))
    self.forward = make_forward(graphdef)
    self.max_answer_length, self.batch_questions = max_answer_length, batch_questions
    self.lock = threading.Lock()

  def answer(self, questions: list[str], hits: list[list]) -> list[dict]:
    """hits: each question's passages (`Searcher.search`'s `Hit`s: pid, title, text) -> per
    question {text, passage_id, passage_rank, title, score, start, end}: the answer, the passage
    it was read from, and the character span [start, end) in that passage of the span read
    (None for an empty answer)."""
    from dpr_jax.reader.predict import predict
    if not questions:
      return []
    results = [{"question": q, "answers": [],
                "ctxs": [{"id": h.pid, "title": h.title, "text": h.text} for h in hh]}
               for q, hh in zip(questions, hits)]
    with self.lock:
      preds = predict(self.forward, self.params, results, self.tok,
                      top_k=max(len(hh) for hh in hits), batch_questions=self.batch_questions,
                      max_answer_length=self.max_answer_length, mesh=self.mesh)
    return [answer_record(p) for p in preds]


def answer_record(p: dict) -> dict:
  """A reader prediction (`reader.predict.prediction`) -> the service's answer record; the span
  is the prediction's own `start_char` / `end_char`."""
  span = p["prediction"] != "" and p.get("start_char") is not None
  return {"text": p["prediction"], "passage_id": p["passage_id"],
          "passage_rank": p["passage_rank"], "title": p["title"], "score": float(p["score"]),
          "start": p["start_char"] if span else None, "end": p["end_char"] if span else None}
