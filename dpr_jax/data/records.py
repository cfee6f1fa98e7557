"""The in-memory corpus and questions that every reader returns (`dpr_jax.data.corpus`, `beir`,
`msmarco`). Ids are strings."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Corpus:
  ids: list[str]
  texts: list[str]
  titles: list[str]
  path: str = ""

  def __len__(self):
    return len(self.ids)


@dataclasses.dataclass
class Question:
  question: str
  answers: list[str]
  id: str | None = None
  positive_pids: list[str] | None = None
  title: str | None = None
  relevance: dict[str, int] | None = None   # graded judgements (BEIR, MS MARCO): pid -> grade
