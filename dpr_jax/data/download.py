"""Download the data files DPR publishes, and the official SQuAD v1.1 files.

    python -m dpr_jax.download nq [--out data/dpr]    # NQ train + dev + the .qa.csv files
    python -m dpr_jax.download psgs_w100               # the 21M-passage Wikipedia TSV
    python -m dpr_jax.download squad                   # train-v1.1.json, dev-v1.1.json
    python -m dpr_jax.download beir-scifact            # a BEIR dataset, unpacked: data/beir/scifact/
    python -m dpr_jax.download --list                  # resources, groups and sizes (offline)

Files keep their publishers' names and compression (`biencoder-nq-train.json.gz` is read as is)
and go to `--out`, by default a folder under `./data` of the working directory: DPR's files to
`./data/dpr`, where `configs/nq.py` looks for them; SQuAD's to `./data/squad-official`, where
`prepare squad` and the SQuAD configs look for them. A download streams into `NAME.part`,
resumes it with an HTTP Range request when rerun (or after a dropped connection, `--retries`
times), checks the size against the server's Content-Length (and the catalog's size, md5 and
sha256 where known), then renames it to `NAME`. A file already present is not fetched again.
DPR's URLs are those of its `dpr/data/download_data.py` (facebookresearch/DPR); DPR publishes
neither sizes nor checksums, so the catalog lists none for them. SQuAD's files carry their
sizes and sha256 as loaders commonly record them (ParlAI, Hugging Face `squad`):
train-v1.1.json 30,288,272 bytes, dev-v1.1.json 4,854,279 bytes. BEIR's datasets (`beir-NAME`,
group `beir-small`: SciFact, NFCorpus, FiQA, ArguAna, SCIDOCS) carry the md5 BEIR's README lists
and the size ir_datasets records for the same file (BEIR publishes none); each zip goes to
`./data/beir` and is unpacked into `./data/beir/NAME/`, a BEIR folder (`dpr_jax.data.beir`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from dpr_jax.data import resources

BASE = "https://dl.fbaipublicfiles.com/dpr"


@dataclasses.dataclass(frozen=True)
class Resource:
  name: str
  url: str
  desc: str
  size: int | None = None   # bytes, where published
  md5: str | None = None    # where published
  sha256: str | None = None  # where published
  folder: str = "dpr"       # the default folder, ./data/<folder>
  unpack: bool = False      # a zip to extract beside it (dpr_jax.data.unpack)

  @property
  def filename(self) -> str:
    return self.url.rsplit("/", 1)[1]


def _r(name, path, desc):
  return Resource(name, f"{BASE}/{path}", desc)


def _squad(name, file, desc, size, sha256):
  return Resource(name, resources.SQUAD_URL + file, desc, size=size, sha256=sha256,
                  folder=resources.LOCAL_OFFICIAL.name)


def _beir(name, md5, size, desc):
  return Resource(f"beir-{name}", f"{resources.BEIR_URL}{name}.zip", f"BEIR {name}: {desc}",
                  md5=md5, size=size, folder="beir", unpack=True)


CATALOG = {r.name: r for r in [
    _r("nq-train", "data/retriever/biencoder-nq-train.json.gz", "NQ retriever training set"),
    _r("nq-dev", "data/retriever/biencoder-nq-dev.json.gz", "NQ retriever dev set"),
    _r("nq-adv-hn-train", "data/retriever/biencoder-nq-adv-hn-train.json.gz",
       "NQ training set, hard negatives mined with DPR's NQ model"),
    _r("trivia-train", "data/retriever/biencoder-trivia-train.json.gz",
       "TriviaQA retriever training set"),
    _r("trivia-dev", "data/retriever/biencoder-trivia-dev.json.gz", "TriviaQA retriever dev set"),
    _r("squad1-train", "data/retriever/biencoder-squad1-train.json.gz",
       "SQuAD 1.1 retriever training set"),
    _r("squad1-dev", "data/retriever/biencoder-squad1-dev.json.gz", "SQuAD 1.1 retriever dev set"),
    _r("webq-train", "data/retriever/biencoder-webquestions-train.json.gz",
       "WebQuestions retriever training set"),
    _r("webq-dev", "data/retriever/biencoder-webquestions-dev.json.gz",
       "WebQuestions retriever dev set"),
    _r("curatedtrec-train", "data/retriever/biencoder-curatedtrec-train.json.gz",
       "CuratedTREC retriever training set"),
    _r("curatedtrec-dev", "data/retriever/biencoder-curatedtrec-dev.json.gz",
       "CuratedTREC retriever dev set"),
    _r("nq-test.qa", "data/retriever/nq-test.qa.csv", "NQ test questions (question<TAB>answers)"),
    _r("nq-dev.qa", "data/retriever/nq-dev.qa.csv", "NQ dev questions"),
    _r("nq-train.qa", "data/retriever/nq-train.qa.csv", "NQ training questions"),
    _r("trivia-test.qa", "data/retriever/trivia-test.qa.csv.gz", "TriviaQA test questions"),
    _r("trivia-dev.qa", "data/retriever/trivia-dev.qa.csv.gz", "TriviaQA dev questions"),
    _r("squad1-test.qa", "data/retriever/squad1-test.qa.csv", "SQuAD 1.1 test questions"),
    _r("webq-test.qa", "data/retriever/webquestions-test.qa.csv", "WebQuestions test questions"),
    _r("curatedtrec-test.qa", "data/retriever/curatedtrec-test.qa.csv",
       "CuratedTREC test questions (answers are regular expressions)"),
    _r("psgs_w100", "wikipedia_split/psgs_w100.tsv.gz",
       "Wikipedia (Dec 2018) in 21M 100-word passages, id<TAB>text<TAB>title"),
    _squad("squad-train", "train-v1.1.json", "the official SQuAD v1.1 training set", 30288272,
           "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955"),
    _squad("squad-dev", "dev-v1.1.json", "the official SQuAD v1.1 dev set", 4854279,
           "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),
    *(_beir(name, *v) for name, v in resources.BEIR_DATASETS.items()),
]}

GROUPS = {
    "nq": ["nq-train", "nq-dev", "nq-dev.qa", "nq-test.qa"],
    "trivia": ["trivia-train", "trivia-dev", "trivia-dev.qa", "trivia-test.qa"],
    "squad1": ["squad1-train", "squad1-dev", "squad1-test.qa"],
    "webq": ["webq-train", "webq-dev", "webq-test.qa"],
    "curatedtrec": ["curatedtrec-train", "curatedtrec-dev", "curatedtrec-test.qa"],
    "wikipedia": ["psgs_w100"],
    "squad": ["squad-train", "squad-dev"],
    "beir-small": [f"beir-{n}" for n in resources.BEIR_SMALL],
}


class DownloadError(OSError):
  """A failed, short or corrupt download; the message names the URL."""


def expand(names, catalog=None) -> list[Resource]:
  """Resources named by `names` (resource or group names), in order, without repeats."""
  catalog = catalog or CATALOG
  out = []
  for n in names:
    if n not in catalog and n not in GROUPS:
      raise ValueError(f"expected a resource or group name (see --list), found unknown "
                       f"resource {n!r}")
    for m in GROUPS.get(n, [n]):
      if catalog[m] not in out:
        out.append(catalog[m])
  return out


def format_size(n: int | None) -> str:
  if n is None:
    return "not published"
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1000 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1000


def listing(catalog=None) -> str:
  catalog = catalog or CATALOG
  rows = [f"{'resource':<21} {'size':>14}  file / description"]
  rows += [f"{r.name:<21} {format_size(r.size):>14}  {r.filename}: {r.desc}"
           for r in catalog.values()]
  rows += ["", "groups:"] + [f"  {g:<12} {' '.join(m)}" for g, m in GROUPS.items()]
  return "\n".join(rows)


class _Dropped(Exception):
  def __init__(self, have: int, total: int | None):
    super().__init__(have, total)
    self.have, self.total = have, total


def _content_range(value: str | None) -> tuple[int, int | None]:
  """`bytes START-END/TOTAL` (or `bytes */TOTAL`) -> (START or -1, TOTAL or None)."""
  _, _, spec = (value or "").partition(" ")
  span, _, total = spec.partition("/")
  start = span.split("-")[0]
  return (int(start) if start.isdigit() else -1), (int(total) if total.isdigit() else None)


def _open(url: str, have: int, timeout: float):
  req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
  try:
    return urllib.request.urlopen(req, timeout=timeout)
  except urllib.error.HTTPError as e:
    if e.code == 416 and have and _content_range(e.headers.get("Content-Range"))[1] == have:
      return None  # the partial file is already whole
    hint = f" (the partial file holds {have} bytes: delete it and rerun)" if e.code == 416 else ""
    raise DownloadError(f"{url}: HTTP {e.code} {e.reason}{hint}") from e
  except (urllib.error.URLError, OSError) as e:
    raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from e


def _fetch_part(res: Resource, part: Path, timeout: float, progress: bool) -> int:
  """Appends the rest of `res` to `part`; returns the size. Raises _Dropped when the
  connection ends early."""
  have = part.stat().st_size if part.exists() else 0
  resp = _open(res.url, have, timeout)
  if resp is None:
    return have
  with resp:
    if resp.status == 206:
      start, total = _content_range(resp.headers.get("Content-Range"))
      if start != have:
        raise DownloadError(f"{res.url}: asked for bytes from {have}, the server sent from {start}")
    else:  # the whole file (the server ignores ranges, or nothing was there yet)
      have, length = 0, resp.headers.get("Content-Length")
      total = int(length) if length and length.isdigit() else None
    if res.size is not None and total is not None and total != res.size:
      raise DownloadError(f"{res.url}: the server has {total} bytes, expected {res.size}")
    with open(part, "ab" if have else "wb") as f, tqdm(
        total=total, initial=have, unit="B", unit_scale=True, desc=res.filename,
        disable=not progress, mininterval=1) as bar:
      while True:
        try:
          chunk = resp.read(1 << 20)
        except (http.client.HTTPException, OSError) as e:
          raise _Dropped(have, total) from e
        if not chunk:
          break
        f.write(chunk)
        have += len(chunk)
        bar.update(len(chunk))
  if total is not None and have != total:
    raise _Dropped(have, total)
  return have


def _digest(path: Path, algorithm: str) -> str:
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def fetch(res: Resource, out_dir, *, retries: int = 3, timeout: float = 60.0,
          progress: bool = True) -> Path:
  """Downloads `res` into `out_dir` (resuming `NAME.part`); returns the file's path."""
  dest = Path(out_dir) / res.filename
  if dest.is_file() and res.size in (None, dest.stat().st_size):
    return dest
  dest.parent.mkdir(parents=True, exist_ok=True)
  part = dest.with_name(dest.name + ".part")
  for attempt in range(retries + 1):
    try:
      size = _fetch_part(res, part, timeout, progress)
      break
    except _Dropped as e:
      if attempt == retries:
        raise DownloadError(
            f"{res.url}: short download, the connection ended at {e.have} of "
            f"{e.total if e.total is not None else 'unknown'} bytes ({attempt + 1} tries); "
            f"rerun to resume from {part}") from None
  if res.size is not None and size != res.size:
    raise DownloadError(f"{res.url}: got {size} bytes, expected {res.size} (kept in {part})")
  for algorithm, want in (("md5", res.md5), ("sha256", res.sha256)):
    if want and _digest(part, algorithm) != want:
      part.unlink()
      raise DownloadError(f"{res.url}: {algorithm} differs from {want}; the download was removed")
  os.replace(part, dest)
  return dest


def fetch_all(names, out=None, catalog=None, **kw) -> list[Path]:
  """Downloads the resources `names` (resource or group names), each into `out` or, by
  default, its own folder under ./data; returns their paths."""
  return [fetch(r, out or resources.download_dir(r.folder), **kw) for r in expand(names, catalog)]


def main(argv=None, catalog=None) -> int:
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.download", __doc__)
  ap.add_argument("resources", nargs="*", help="resource or group names (see --list)")
  ap.add_argument("--out", type=Path, default=None,
                  help=f"folder for the files (default: {resources.LOCAL_DPR}/ for DPR's, "
                  f"{resources.LOCAL_OFFICIAL}/ for SQuAD's, under the cwd)")
  ap.add_argument("--list", action="store_true", help="print the resources and exit")
  ap.add_argument("--retries", type=cli.non_negative_int, default=3, help="resumes after a dropped connection")
  ap.add_argument("--timeout", type=float, default=60.0, help="seconds without data")
  a = ap.parse_args(argv)
  if a.list:
    print(listing(catalog))
    return 0
  if not a.resources:
    ap.error("name a resource or a group (see --list)")
  items = expand(a.resources, catalog)
  for r in items:
    path = fetch(r, a.out or resources.download_dir(r.folder), retries=a.retries,
                 timeout=a.timeout)
    if r.unpack:
      from dpr_jax.data.unpack import unpack_zip
      print(f"{path.name}: {path.stat().st_size:,} bytes", file=sys.stderr)
      path = unpack_zip(path)
    print(path)
  return 0


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.download())
