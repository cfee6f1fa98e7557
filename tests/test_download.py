"""`python -m dpr_jax.download` against a local HTTP server on 127.0.0.1 serving fixture bytes."""
import hashlib
import http.server
import threading
import urllib.request

import pytest

from dpr_jax.data import download
from dpr_jax import cli
from dpr_jax.data.download import DownloadError, Resource

BODY = bytes(range(256)) * 40           # 10,240 bytes, every byte value
SMALL = b"question\t['answer']\n" * 10


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves `files`; Range requests honoured. `/drop/*` sends half of the body under the full
  Content-Length then closes the connection, the first `drops` times it is asked; `/cut/*`
  always stops after 1,000 bytes; `/norange/*` ignores Range."""
  files: dict = {}
  log: list = []
  drops = {"n": 0}

  def do_GET(self):
    self.log.append((self.path, self.headers.get("Range")))
    name = self.path.rsplit("/", 1)[1]
    if name not in self.files:
      self.send_error(404, "Not Found")
      return
    body, start = self.files[name], 0
    rng = self.headers.get("Range")
    if rng and not self.path.startswith("/norange/"):
      start = int(rng.removeprefix("bytes=").split("-")[0])
      if start >= len(body):
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{len(body)}")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
      self.send_response(200)
    self.send_header("Content-Length", str(len(body) - start))
    self.end_headers()
    rest = body[start:]
    if self.path.startswith("/cut/"):
      rest = rest[:1000]
    if self.path.startswith("/drop/") and self.drops["n"] > 0:
      self.drops["n"] -= 1
      rest = rest[:len(rest) // 2]
      self.close_connection = True
    self.wfile.write(rest)
    self.wfile.flush()

  def log_message(self, *args):
    pass


@pytest.fixture
def server():
  _Handler.files = {"body.bin": BODY, "nq-test.qa.csv": SMALL}
  _Handler.log = []
  _Handler.drops["n"] = 0
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  t = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
  t.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
  httpd.shutdown()
  httpd.server_close()


def _res(url, **kw):
  return Resource("x", url, "fixture", **kw)


def test_download_checks_size_and_md5_and_leaves_no_part(server, tmp_path):
  base, h = server
  res = _res(f"{base}/files/body.bin", size=len(BODY), md5=hashlib.md5(BODY).hexdigest())
  path = download.fetch(res, tmp_path, progress=False)
  assert path == tmp_path / "body.bin" and path.read_bytes() == BODY
  assert sorted(p.name for p in tmp_path.iterdir()) == ["body.bin"]
  assert h.log == [("/files/body.bin", None)]
  download.fetch(res, tmp_path, progress=False)    # present and whole: not fetched again
  assert len(h.log) == 1


def test_dropped_connection_then_resumed_download(server, tmp_path):
  base, h = server
  h.drops["n"] = 1
  res = _res(f"{base}/drop/body.bin", size=len(BODY))
  with pytest.raises(DownloadError, match=r"connection ended at 5120 of 10240 bytes.*rerun"):
    download.fetch(res, tmp_path, retries=0, progress=False)
  part = tmp_path / "body.bin.part"
  assert part.read_bytes() == BODY[:5120] and not (tmp_path / "body.bin").exists()
  path = download.fetch(res, tmp_path, retries=0, progress=False)
  assert path.read_bytes() == BODY and not part.exists()
  assert h.log == [("/drop/body.bin", None), ("/drop/body.bin", "bytes=5120-")]


def test_drops_are_resumed_within_one_call(server, tmp_path):
  base, h = server
  h.drops["n"] = 2   # 10240 -> 5120 sent, then 2560 of the rest, then the remaining 2560
  path = download.fetch(_res(f"{base}/drop/body.bin"), tmp_path, retries=2, progress=False)
  assert path.read_bytes() == BODY
  assert [r for _, r in h.log] == [None, "bytes=5120-", "bytes=7680-"]


def test_a_whole_part_file_is_finished_on_416(server, tmp_path):
  base, h = server
  (tmp_path / "body.bin.part").write_bytes(BODY)
  assert download.fetch(_res(f"{base}/f/body.bin"), tmp_path, progress=False).read_bytes() == BODY
  assert h.log == [("/f/body.bin", "bytes=10240-")]


def test_a_server_ignoring_range_restarts_the_file(server, tmp_path):
  base, h = server
  (tmp_path / "body.bin.part").write_bytes(b"x" * 100)
  path = download.fetch(_res(f"{base}/norange/body.bin"), tmp_path, progress=False)
  assert path.read_bytes() == BODY and h.log == [("/norange/body.bin", "bytes=100-")]


def test_a_part_larger_than_the_file_is_reported(server, tmp_path):
  base, _ = server
  (tmp_path / "body.bin.part").write_bytes(BODY + b"extra")
  with pytest.raises(DownloadError, match=r"HTTP 416 .*holds 10245 bytes: delete it and rerun"):
    download.fetch(_res(f"{base}/f/body.bin"), tmp_path, progress=False)


def _cli(argv, catalog=None):
  """The command as users run it: one `error:` line and status 2 on failure."""
  return cli.run(lambda a: download.main(a, catalog=catalog), argv)


def test_404_is_one_line_on_stderr_and_writes_nothing(server, tmp_path, capsys):
  base, _ = server
  catalog = {"gone": Resource("gone", f"{base}/files/gone.json.gz", "missing")}
  rc = _cli(["gone", "--out", str(tmp_path / "out")], catalog)
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and err == [f"error: {base}/files/gone.json.gz: HTTP 404 Not Found"]
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_short_file_fails_and_is_not_renamed(server, tmp_path, capsys):
  base, h = server
  catalog = {"cut": Resource("cut", f"{base}/cut/body.bin", "cut short")}
  rc = _cli(["cut", "--out", str(tmp_path), "--retries", "1"], catalog)
  err = capsys.readouterr().err.strip().splitlines()   # progress bars, then the error
  assert rc == 2 and [l for l in err if l.startswith("error:")] == err[-1:]
  assert "short download, the connection ended at 2000 of 10240 bytes (2 tries)" in err[-1]
  assert not (tmp_path / "body.bin").exists()
  assert (tmp_path / "body.bin.part").read_bytes() == BODY[:2000]
  assert [r for _, r in h.log] == [None, "bytes=1000-"]
  # The catalog's size disagrees with the server's: refused before anything is written.
  with pytest.raises(DownloadError, match=r"the server has 10240 bytes, expected 20000"):
    download.fetch(_res(f"{base}/files/body.bin", size=20000), tmp_path / "b", progress=False)
  assert not (tmp_path / "b" / "body.bin").exists()


def test_md5_mismatch_removes_the_download(server, tmp_path):
  base, _ = server
  with pytest.raises(DownloadError, match="md5 differs"):
    download.fetch(_res(f"{base}/files/body.bin", md5="0" * 32), tmp_path, progress=False)
  assert list(tmp_path.iterdir()) == []


def test_cli_downloads_into_out(server, tmp_path, capsys):
  base, _ = server
  catalog = {"nq-test.qa": Resource("nq-test.qa", f"{base}/d/nq-test.qa.csv", "NQ test")}
  assert _cli(["nq-test.qa", "--out", str(tmp_path)], catalog) == 0
  assert (tmp_path / "nq-test.qa.csv").read_bytes() == SMALL
  assert capsys.readouterr().out.strip() == str(tmp_path / "nq-test.qa.csv")


def test_list_works_offline(monkeypatch, capsys):
  def offline(*a, **k):
    raise AssertionError("no network for --list")
  monkeypatch.setattr(urllib.request, "urlopen", offline)
  assert _cli(["--list"]) == 0
  out = capsys.readouterr().out
  for name, file in [("nq-train", "biencoder-nq-train.json.gz"), ("nq-test.qa", "nq-test.qa.csv"),
                     ("trivia-dev", "biencoder-trivia-dev.json.gz"),
                     ("squad1-train", "biencoder-squad1-train.json.gz"),
                     ("psgs_w100", "psgs_w100.tsv.gz")]:
    assert any(l.split()[0] == name and file in l for l in out.splitlines() if l.strip())
  assert "nq           nq-train nq-dev nq-dev.qa nq-test.qa" in out


def test_groups_expand_and_unknown_names_fail(capsys):
  assert [r.filename for r in download.expand(["nq", "nq-train"])] == [
      "biencoder-nq-train.json.gz", "biencoder-nq-dev.json.gz", "nq-dev.qa.csv", "nq-test.qa.csv"]
  assert _cli(["nq-trian"]) == 2
  assert "unknown resource 'nq-trian'" in capsys.readouterr().err
  for r in download.CATALOG.values():
    assert r.url.startswith("https://dl.fbaipublicfiles.com/dpr/") == (r.folder == "dpr")


def test_nq_config_finds_the_downloaded_files(tmp_path, monkeypatch):
  from dpr_jax.configs import nq
  monkeypatch.chdir(tmp_path)
  c = nq.get_config()
  assert c.data.train_files == str(tmp_path / "data" / "dpr" / "biencoder-nq-train.json.gz")
  assert c.data.dev_file == str(tmp_path / "data" / "dpr" / "biencoder-nq-dev.json.gz")
  c = nq.get_config("dir=/d/dpr")
  assert (c.data.train_files, c.data.dev_file) == ("/d/dpr/biencoder-nq-train.json.gz",
                                                   "/d/dpr/biencoder-nq-dev.json.gz")
  c = nq.get_config("train=t.json,dev=/v.json")
  assert (c.data.train_files, c.data.dev_file) == (str(tmp_path / "t.json"), "/v.json")
  with pytest.raises(ValueError, match="nq.py: expected dir=DIR"):
    nq.get_config("trian=t.json")


# --- the official SQuAD files ------------------------------------------------------------------

import dataclasses
import gzip
import json


def test_squad_resources_are_the_official_files_with_their_sizes():
  """URLs of the SQuAD site, sizes and sha256 as published loaders record them (ParlAI's
  `squad` task, Hugging Face's `squad` script): 30,288,272 and 4,854,279 bytes."""
  train, dev = download.expand(["squad"])
  base = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
  assert (train.url, train.size, train.filename) == (base + "train-v1.1.json", 30288272,
                                                     "train-v1.1.json")
  assert (dev.url, dev.size, dev.filename) == (base + "dev-v1.1.json", 4854279, "dev-v1.1.json")
  assert train.sha256 == "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955"
  assert dev.sha256 == "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"
  assert train.folder == dev.folder == "squad-official"


def _official(title, context, qid, question, answer):
  return json.dumps({"version": "1.1", "data": [{"title": title, "paragraphs": [
      {"context": context, "qas": [{"id": qid, "question": question,
                                    "answers": [{"answer_start": 0, "text": answer}]}]}]}]}).encode()


def _local_squad(base, bodies, prefix="files"):
  """The catalog's SQuAD entries, served by the local server: sizes and sha256 of `bodies`."""
  return {r.name: dataclasses.replace(r, url=f"{base}/{prefix}/{r.filename}",
                                      size=len(bodies[r.filename]),
                                      sha256=hashlib.sha256(bodies[r.filename]).hexdigest())
          for r in download.expand(["squad"])}


def test_download_squad_into_data_squad_official(server, tmp_path, monkeypatch, capsys):
  """`download squad` with no --out: both files, under the cwd's data/squad-official; a dropped
  connection resumed; the sha256 checked (a wrong one removes the file)."""
  base, h = server
  bodies = {"train-v1.1.json": _official("T", "Paris is in France. " * 300, "q1", "Where?",
                                         "France"),
            "dev-v1.1.json": _official("D", "Rome is in Italy.", "q2", "Where?", "Italy")}
  h.files = bodies
  h.drops["n"] = 1
  monkeypatch.chdir(tmp_path)
  catalog = _local_squad(base, bodies, "drop")
  assert _cli(["squad"], catalog) == 0
  folder = tmp_path / "data" / "squad-official"
  assert capsys.readouterr().out.split() == [str(folder / "train-v1.1.json"),
                                             str(folder / "dev-v1.1.json")]
  assert {p.name: p.read_bytes() for p in folder.iterdir()} == bodies
  n = len(bodies["train-v1.1.json"])
  assert [r for _, r in h.log] == [None, f"bytes={n - n // 2}-", None]
  bad = {k: dataclasses.replace(r, sha256="0" * 64) for k, r in catalog.items()}
  assert _cli(["squad-dev", "--out", str(tmp_path / "x")], bad) == 2
  assert "sha256 differs" in capsys.readouterr().err
  assert list((tmp_path / "x").iterdir()) == []


def test_prepare_squad_download_builds_from_the_fetched_files(server, tmp_path, monkeypatch):
  """`prepare squad --download`: fetches both files into data/squad-official, then builds the
  corpus (both files' paragraphs), the test questions (dev) and the training files."""
  from dpr_jax.tools import prepare
  base, h = server
  arts = [{"title": f"A{i}", "paragraphs": [{"context": f"Fact {i}: the answer is word{i}.",
                                             "qas": [{"id": f"q{i}", "question": f"Fact {i}?",
                                                      "answers": [{"answer_start": 0,
                                                                   "text": f"word{i}"}]}]}]}
          for i in range(4)]
  bodies = {"train-v1.1.json": json.dumps({"data": arts[:3]}).encode(),
            "dev-v1.1.json": json.dumps({"data": arts[3:]}).encode()}
  h.files = bodies
  for name, r in _local_squad(base, bodies).items():
    monkeypatch.setitem(download.CATALOG, name, r)
  monkeypatch.chdir(tmp_path)
  assert prepare.main(["squad", "--download", "--out", "data/squad", "--num_val_articles", "1",
                       "--num_hard_negatives", "1"]) == 0
  assert sorted(p.name for p in (tmp_path / "data" / "squad-official").iterdir()) == [
      "dev-v1.1.json", "train-v1.1.json"]
  out = tmp_path / "data" / "squad"
  with gzip.open(out / "paragraphs.tsv.gz", "rt") as f:
    assert len(f.read().splitlines()) == 1 + 4
  with gzip.open(out / "test.qas.jsonl.gz", "rt") as f:
    assert [json.loads(l)["id"] for l in f] == ["q3"]
  with gzip.open(out / "train.jsonl.gz", "rt") as f:
    train = [json.loads(l)["id"] for l in f]
  dev = [json.loads(l)["id"] for l in open(out / "dev.qas.jsonl")]
  assert len(dev) == 1 and sorted(train + dev) == ["q0", "q1", "q2"]


# --- BEIR datasets ---------------------------------------------------------------------------

import io
import zipfile


def _zip(members: dict) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    for name, text in members.items():
      z.writestr(name, text)
  return buf.getvalue()


def test_beir_resources_are_beirs_urls_and_md5s():
  """URLs and md5s as BEIR's README lists them, sizes as ir_datasets records them."""
  small = download.expand(["beir-small"])
  assert [r.name for r in small] == ["beir-scifact", "beir-nfcorpus", "beir-fiqa",
                                     "beir-arguana", "beir-scidocs"]
  sci = download.CATALOG["beir-scifact"]
  assert sci.url == "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"
  assert (sci.md5, sci.size, sci.folder, sci.unpack) == ("5f7d1de60b170fc8027bb7898e2efca1",
                                                         2816079, "beir", True)
  nf = download.CATALOG["beir-nfcorpus"]
  assert (nf.md5, nf.size) == ("a89dba18a62ef92f7d323ec890a0d38d", 2448432)
  assert download.CATALOG["beir-cqadupstack"].size == 5343728040


def test_download_beir_unpacks_a_readable_folder(server, tmp_path, monkeypatch, capsys):
  """`download beir-x` with no --out: the zip into data/beir (md5 checked), unpacked into
  data/beir/x/, which reads as a BEIR folder; its size is reported."""
  from dpr_jax.data.corpus import read_corpus, read_questions
  base, h = server
  body = _zip({"__MACOSX/x/._corpus.jsonl": "fork",
               "x/corpus.jsonl": '{"_id": "d1", "title": "T", "text": "Some text."}\n',
               "x/queries.jsonl": '{"_id": "q1", "text": "text?"}\n',
               "x/qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\n"})
  h.files = {"x.zip": body}
  res = dataclasses.replace(download.CATALOG["beir-scifact"], name="beir-x",
                            url=f"{base}/files/x.zip", md5=hashlib.md5(body).hexdigest(),
                            size=len(body))
  monkeypatch.chdir(tmp_path)
  assert _cli(["beir-x"], {"beir-x": res}) == 0
  out = capsys.readouterr()
  folder = tmp_path / "data" / "beir" / "x"
  assert out.out.strip() == str(folder) and f"x.zip: {len(body):,} bytes" in out.err
  assert read_corpus(folder).ids == ["d1"] and read_questions(folder)[0].positive_pids == ["d1"]
  assert sorted(p.name for p in folder.parent.iterdir()) == ["x", "x.zip"]
  bad = {"beir-x": dataclasses.replace(res, md5="0" * 32)}
  (folder.parent / "x.zip").unlink()
  assert _cli(["beir-x", "--out", str(tmp_path / "y")], bad) == 2
  assert "md5 differs" in capsys.readouterr().err and not any((tmp_path / "y").iterdir())


def test_a_zip_escaping_its_folder_is_refused(server, tmp_path, capsys):
  base, h = server
  body = _zip({"x/corpus.jsonl": "{}\n", "x/../../evil.txt": "boo"})
  h.files = {"x.zip": body}
  res = dataclasses.replace(download.CATALOG["beir-scifact"], name="beir-x",
                            url=f"{base}/files/x.zip", md5=None, size=None)
  assert _cli(["beir-x", "--out", str(tmp_path)], {"beir-x": res}) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1] == f"error: {tmp_path / 'x.zip'}: expected members under x/, found 'x/../../evil.txt'"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip"]
