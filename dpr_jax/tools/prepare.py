"""Build SQuAD retriever training data, from the official SQuAD JSON files or a built folder.

    python -m dpr_jax.prepare squad --download --out data/squad   (fetches the official files
        into ./data/squad-official first, as `python -m dpr_jax.download squad` does)
    python -m dpr_jax.prepare squad --train_json train-v1.1.json[.gz] \
        [--dev_json dev-v1.1.json[.gz]] --out data/squad [--seed 0] [--num_val_articles 40]
    python -m dpr_jax.prepare squad --data_dir FOLDER --out DIR   (FOLDER holds paragraphs.tsv.gz
        and train.qas.jsonl.gz, or the official JSON files)
    python -m dpr_jax.prepare squad --out DIR   (the first of $DPR_DATA_DIR/squad, ./data/squad,
        ./data/squad-official; see dpr_jax.data.resources.squad_source)
    python -m dpr_jax.prepare squad-slice --train_json train-v1.1.json --out dpr_jax/demo_data
        (the embedded demo slice, see dpr_jax.tools.squad_slice)
    python -m dpr_jax.prepare beir --squad --out data/beir-squad   (a corpus and judged questions
        as a BEIR folder, see dpr_jax.tools.beir_prepare)
    python -m dpr_jax.prepare triples --triples FILE --passages CORPUS --questions QUERIES
        --out train.jsonl.gz   (DPR training records from triples by id, MS MARCO's
        qidpidtriples or JSON-lines of ids, see dpr_jax.tools.triples_prepare)

With --train_json (or official files found), first writes in --out (see dpr_jax.data.squad_json):
- `paragraphs.tsv.gz`: the corpus, every paragraph of both files, DPR's `id<TAB>text<TAB>title`.
- `train.qas.jsonl.gz`: the training questions (`id, question, answers, title, positive_pids`).
- `test.qas.jsonl.gz`: the official dev questions, the same way (only with --dev_json).
Then, from the corpus and the training questions:
- `train.jsonl.gz`, `dev.jsonl.gz`: DPR training format. The positive is the paragraph holding
  the answer; hard negatives are the top BM25 paragraphs (bm25s, k1 0.9, b 0.4) that contain no
  answer (DPR's recipe).
- `dev.qas.jsonl`: the validation questions for retrieval evaluation.
- With `--val_splits N`: `dev2.jsonl.gz`, `dev2.qas.jsonl`, ... for N disjoint held-out article
  sets (split i drawn with seed + i from the articles left); training excludes every set.
- `train-split.qas.jsonl.gz`: the training questions, for retrieval (mining, see dpr_jax.mine).
- `split.json`: the held-out articles, the seeds and the counts.
Validation is split by article: no validation paragraph is a training positive. Deterministic
given the inputs and the seed. Every file is written under a temporary name and renamed when
complete; `train.jsonl.gz` comes last.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from dpr_jax.data import resources, squad_json
from dpr_jax.retrieval.bm25 import BM25
from dpr_jax.data.corpus import read_corpus, read_questions
from dpr_jax.data.squad_records import build_records, split_articles

log = logging.getLogger("dpr_jax")


def _tmp(path: Path) -> Path:
  return path.with_name(path.name + ".tmp")


def _write_jsonl(path: Path, records) -> Path:
  """Writes `records` to `path`.tmp (gzip'd for a `.gz` name); returns the temporary path."""
  tmp = _tmp(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(tmp, "wt", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
  return tmp


def build_squad_corpus(out: Path, train_json, dev_json=None) -> dict:
  """Writes `paragraphs.tsv.gz`, `train.qas.jsonl.gz` (and `test.qas.jsonl.gz` from `dev_json`)
  in `out` from the official SQuAD JSON files. Both files are checked before anything is
  written."""
  files = [squad_json.read_squad_json(train_json)]
  if dev_json:
    files.append(squad_json.read_squad_json(dev_json))
  rows, questions = squad_json.corpus_and_questions(files)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  squad_json.write_corpus(_tmp(out / "paragraphs.tsv.gz"), rows, gzipped=True)
  names = ["paragraphs.tsv.gz", "train.qas.jsonl.gz", "test.qas.jsonl.gz"][:len(files) + 1]
  for name, qs in zip(names[1:], questions):
    _write_jsonl(out / name, qs)
  for name in names:
    os.replace(_tmp(out / name), out / name)
  stats = {"passages": len(rows)}
  for f, name, qs in zip(files, ("train", "test"), questions):
    stats[name] = {"file": f.path, "articles": f.num_articles, "paragraphs": len(f.paragraphs),
                   "questions": len(qs), "skipped_no_answer": f.skipped_no_answer}
  return stats


def _qas_records(questions, titles):
  return ({"id": q.id, "question": q.question, "answers": q.answers, "title": titles[q.id],
           "positive_pids": q.positive_pids} for q in questions)


def _sample(items, n, rng):
  if n and n < len(items):
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]
  return items


def dev_name(split: int) -> str:
  """The validation files' stem of held-out split `split` (0-based): `dev`, `dev2`, `dev3`..."""
  return "dev" if split == 0 else f"dev{split + 1}"


def squad_folder(out: Path, squad_dir=None, slice_fallback: bool = False) -> Path:
  """A built SQuAD folder for `prepare_squad`: `squad_dir` (or the one `resources.squad_source`
  finds) when built; official JSON files (or, with `slice_fallback` and no SQuAD found, the
  embedded demo slice) are first built into `out`."""
  src = resources.squad_source(squad_dir or None, embedded_ok=slice_fallback)
  if src.folder:
    return src.folder
  built = build_squad_corpus(out, src.train_json, src.dev_json)
  if src.embedded:
    log.info("no SQuAD folder found (%s, ./%s, ./%s): using the embedded demo slice, "
             "%d paragraphs and %d questions of %s (%s); the full data: python -m "
             "dpr_jax.prepare squad --download --out data/squad", resources.data_dir() / "squad",
             resources.LOCAL_SQUAD, resources.LOCAL_OFFICIAL, built["passages"],
             built["train"]["questions"], resources.SQUAD_JSON[0], src.train_json)
  return Path(out)


def prepare_squad(out: Path, *, squad_dir: Path | None = None, seed: int = 0,
                  num_val_articles: int = 40, num_hard_negatives: int = 3, depth: int = 30,
                  max_train_questions: int | None = None,
                  max_val_questions: int | None = None, val_splits: int = 1,
                  slice_fallback: bool = False) -> dict:
  """Training and validation files in `out` from the SQuAD folder `squad_dir` (see
  `squad_folder`; empty: the folder `resources.squad_source` finds)."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  squad_dir = squad_folder(out, squad_dir, slice_fallback)
  corpus = read_corpus(squad_dir / "paragraphs.tsv.gz")
  qas = read_questions(squad_dir / "train.qas.jsonl.gz")
  titles = {q.id: q.title for q in qas}
  held = split_articles(titles.values(), num_val_articles, seed, val_splits)
  held_all = set().union(*held)
  train_q = [q for q in qas if titles[q.id] not in held_all]
  rng = np.random.default_rng(seed + 1)
  train_q = _sample(train_q, max_train_questions, rng)
  vals = [_sample([q for q in qas if titles[q.id] in arts], max_val_questions, rng)
          for arts in held]
  bm25 = BM25(corpus.titles, corpus.texts)
  stats = {"seed": seed, "val_articles": sorted(held[0]), "corpus": str(squad_dir),
           "num_hard_negatives": num_hard_negatives, "bm25_depth": depth,
           "val_splits": val_splits}
  written = []
  for i, val_q in enumerate(vals):
    name = dev_name(i)
    recs, short = build_records(val_q, corpus, bm25, num_hard_negatives, depth, desc=name)
    written.append(_write_jsonl(out / f"{name}.jsonl.gz", recs))
    written.append(_write_jsonl(out / f"{name}.qas.jsonl", _qas_records(val_q, titles)))
    stats[f"{name}_questions"] = len(recs)
    stats[f"{name}_short_of_hard_negatives"] = short
    if i:
      stats[f"{name}_seed"], stats[f"{name}_articles"] = seed + i, sorted(held[i])
  recs, short = build_records(train_q, corpus, bm25, num_hard_negatives, depth, desc="train")
  written.append(_write_jsonl(out / "train-split.qas.jsonl.gz", _qas_records(train_q, titles)))
  written.append(_write_jsonl(out / "train.jsonl.gz", recs))
  stats["train_questions"], stats["train_short_of_hard_negatives"] = len(recs), short
  _tmp(out / "split.json").write_text(json.dumps(stats, indent=1))
  for tmp in [_tmp(out / "split.json")] + written:
    os.replace(tmp, tmp.with_name(tmp.name.removesuffix(".tmp")))
  return stats


def prepare_windows(passages, out: Path, words: int, stride: int) -> dict:
  """Writes the corpus `passages` as overlapping windows (`dpr_jax.data.windows`) to the TSV
  `out` (gzipped for a `.gz` name), atomically."""
  from dpr_jax.data import windows
  corpus = read_corpus(passages)
  ids, titles, texts = windows.window_corpus(corpus.ids, corpus.titles, corpus.texts, words,
                                             stride)
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  squad_json.write_corpus(_tmp(out), zip(ids, texts, titles), gzipped=out.suffix == ".gz")
  os.replace(_tmp(out), out)
  return {"passages": len(corpus.ids), "windows": len(ids), "words": words, "stride": stride,
          "out": str(out)}


def _parser():
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.prepare", __doc__)
  ap.add_argument("dataset", choices=["squad", "squad-slice", "windows", "beir", "triples"],
                  help="squad: the SQuAD files; squad-slice: the embedded demo slice from "
                  "--train_json; windows: a corpus cut into overlapping word windows "
                  "(--passages, --out FILE.tsv[.gz], --words, --stride); beir: a corpus and "
                  "judged questions as a BEIR folder (see `prepare beir --help`); triples: DPR "
                  "training records from triples by id (see `prepare triples --help`)")
  ap.add_argument("--out", required=True, type=Path, help="output directory (windows: file)")
  ap.add_argument("--passages", type=Path, help="windows: the corpus TSV to cut")
  ap.add_argument("--words", type=cli.positive_int, default=100, help="windows: words each")
  ap.add_argument("--stride", type=cli.positive_int, default=50,
                  help="windows: words between window starts")
  ap.add_argument("--train_json", type=Path, default=None,
                  help="the official SQuAD train-v1.1.json[.gz]: build the corpus from it")
  ap.add_argument("--dev_json", type=Path, default=None,
                  help="the official dev-v1.1.json[.gz] (with --train_json): its paragraphs join"
                  " the corpus, its questions become test.qas.jsonl.gz")
  ap.add_argument("--download", action="store_true",
                  help="squad: first download the official files into --official_dir "
                  "(resumable; kept there), then build from them")
  ap.add_argument("--official_dir", type=Path, default=None,
                  help=f"with --download: where the official files go (default "
                  f"./{resources.LOCAL_OFFICIAL})")
  ap.add_argument("--data_dir", type=Path, default=None,
                  help="without --train_json: folder holding paragraphs.tsv.gz and "
                  "train.qas.jsonl.gz, or the official JSON files (default: the first of "
                  f"${resources.DATA_ENV}/squad, ./{resources.LOCAL_SQUAD}, "
                  f"./{resources.LOCAL_OFFICIAL})")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--num_val_articles", type=cli.positive_int, default=40)
  ap.add_argument("--val_splits", type=cli.positive_int, default=1,
                  help="disjoint held-out article sets (seeds seed, seed+1, ...): dev, dev2, ...; "
                       "training excludes all of them")
  ap.add_argument("--num_hard_negatives", type=cli.positive_int, default=None,
                  help="default 3 (squad-slice: 1)")
  ap.add_argument("--bm25_depth", type=cli.positive_int, default=30, help="BM25 ranks searched for negatives")
  ap.add_argument("--max_train_questions", type=cli.positive_int, default=None,
                  help="default all (squad-slice: 3000 drawn)")
  ap.add_argument("--max_val_questions", type=cli.positive_int, default=None,
                  help="default all (squad-slice: 300 drawn)")
  ap.add_argument("--whole_articles", type=cli.non_negative_int, default=2,
                  help="squad-slice: the file's first N articles are kept whole")
  return ap


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["beir"]:
    from dpr_jax.tools import beir_prepare
    return beir_prepare.main(argv[1:])
  if argv[:1] == ["triples"]:
    from dpr_jax.tools import triples_prepare
    return triples_prepare.main(argv[1:])
  ap = _parser()
  a = ap.parse_args(argv)
  if a.dataset == "windows":
    if not a.passages:
      ap.error("windows needs --passages")
    print(json.dumps(prepare_windows(a.passages, a.out, a.words, a.stride), indent=1))
    return 0
  if a.dataset == "squad-slice":
    from dpr_jax.tools import squad_slice
    return squad_slice.run(a, ap)
  if a.dev_json and not a.train_json:
    ap.error("--dev_json needs --train_json")
  if sum(map(bool, (a.train_json, a.data_dir, a.download))) > 1:
    ap.error("give one of --train_json, --data_dir and --download")
  if a.official_dir and not a.download:
    ap.error("--official_dir goes with --download")
  if a.download:
    from dpr_jax.data import download
    a.train_json, a.dev_json = download.fetch_all(["squad"], a.official_dir)
  built = build_squad_corpus(a.out, a.train_json, a.dev_json) if a.train_json else None
  stats = prepare_squad(a.out, squad_dir=a.out if built else a.data_dir, seed=a.seed,
                        num_val_articles=a.num_val_articles,
                        num_hard_negatives=a.num_hard_negatives or 3, depth=a.bm25_depth,
                        max_train_questions=a.max_train_questions,
                        max_val_questions=a.max_val_questions, val_splits=a.val_splits)
  if built:
    print(json.dumps(built, indent=1))
  print(json.dumps({k: v for k, v in stats.items() if k != "val_articles"}, indent=1))
  return 0


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.prepare())
