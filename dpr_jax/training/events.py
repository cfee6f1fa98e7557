"""TensorBoard event files beside metrics.jsonl, written with tensorboardX when it is installed
(an optional dependency: numpy + protobuf, no TensorFlow). Without it nothing is written.

`tensorboard --logdir runs/` then shows every workdir under runs/ as a run. Writes are
synchronous and flushed, so the files are complete whenever training stops. On resume the new
file starts with TensorBoard's purge marker at the first step after the restored one, so the
steps that metrics.jsonl drops are dropped from the plots too.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


class EventWriter:
  def __init__(self, logdir, resume_step: int = 0):
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2, summary_pb2
    self._event, self._summary = event_pb2, summary_pb2
    self._w = EventsWriter(str(Path(logdir) / "events"), f".{os.getpid()}")
    if resume_step:
      self._w.write_event(event_pb2.Event(
          wall_time=time.time(), step=resume_step + 1,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    self._w.flush()

  def write(self, step: int, values: dict) -> None:
    """One scalar per key (its tag) at `step`."""
    summary = self._summary.Summary(value=[self._summary.Summary.Value(tag=k, simple_value=float(v))
                                           for k, v in values.items()])
    self._w.write_event(self._event.Event(wall_time=time.time(), step=int(step), summary=summary))
    self._w.flush()

  def close(self) -> None:
    self._w.close()


def open_writer(logdir, resume_step: int = 0) -> EventWriter | None:
  """An EventWriter into `logdir`, or None when tensorboardX is not installed."""
  try:
    import tensorboardX  # noqa: F401
  except ImportError:
    return None
  return EventWriter(logdir, resume_step)
