"""The service's guards: body and question limits, the bearer token, 500s that leak nothing,
flags checked before anything is loaded or bound, waitress, and a load test against the CLI."""
import concurrent.futures
import json
import logging
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from dpr_jax import cli
from dpr_jax.tools import serve, serve_net


class Stub:
  """A searcher that answers every question with one passage (or fails, with a path)."""
  retriever = "bm25"

  def __init__(self, fail=False):
    self.fail = fail

  def __len__(self):
    return 1

  def search(self, questions, k):
    if self.fail:
      raise RuntimeError("/srv/secret/index.faiss: unreadable")
    from dpr_jax.retrieval.searcher import Hit
    return [[Hit("p1", 1.0, "T", "text")] for _ in questions]


def test_body_over_the_limit_is_413():
  client = serve.create_app(Stub(), max_body_bytes=100).test_client()
  ok = json.dumps(["q" * 96]).encode()  # 100 bytes
  assert client.post("/search", data=ok, content_type="application/json").status_code == 200
  big = json.dumps(["q" * 97]).encode()  # 101 bytes
  r = client.post("/search", data=big, content_type="application/json")
  assert r.status_code == 413 and r.get_json() == {"error": "request body over 100 bytes",
                                                    "status": 413}
  # A GET carrying a body is refused too, before the body is read.
  assert client.get("/search?q=who", data=b"x" * 101).status_code == 413
  # The default: 1 MiB.
  r = serve.create_app(Stub()).test_client().post(
      "/search", data=json.dumps(["q" * (1 << 20)]), content_type="application/json")
  assert r.status_code == 413


def test_question_over_the_limit_is_400():
  client = serve.create_app(Stub(), max_question_chars=10).test_client()
  assert client.get("/search?q=" + "a" * 10).status_code == 200
  r = client.get("/search?q=" + "a" * 11)
  assert r.status_code == 400
  assert r.get_json()["error"] == "question: expected at most 10 characters, got 11"
  r = client.post("/search", json=["short", "b" * 11])
  assert r.status_code == 400 and r.get_json()["error"].startswith("question 1: expected at most")
  assert client.get("/?q=" + "a" * 11).status_code == 400  # the page too
  assert serve.create_app(Stub()).test_client().get("/search?q=" + "a" * 1001).status_code == 400


def test_a_500_names_a_request_id_and_nothing_else(caplog):
  client = serve.create_app(Stub(fail=True)).test_client()
  with caplog.at_level(logging.ERROR):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("dpr_jax.serve").addHandler(handler)
    try:
      r = client.get("/search?q=who")
    finally:
      logging.getLogger("dpr_jax.serve").removeHandler(handler)
  body = r.get_data(as_text=True)
  assert r.status_code == 500
  assert "secret" not in body and "RuntimeError" not in body and "/srv" not in body
  rid = r.get_json()["request_id"]
  assert re.fullmatch(r"[0-9a-f]{16}", rid) and r.headers["X-Request-Id"] == rid
  logged = [rec for rec in records if rid in rec.getMessage()]
  assert len(logged) == 1 and "/srv/secret/index.faiss" in str(logged[0].exc_info[1])


def test_bearer_token():
  client = serve.create_app(Stub(), token="s3cret").test_client()
  r = client.get("/search?q=who")
  assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
  assert client.get("/search?q=who", headers={"Authorization": "Bearer wrong"}).status_code == 401
  assert client.get("/search?q=who", headers={"Authorization": "s3cret"}).status_code == 401
  assert client.get("/search?q=who",
                    headers={"Authorization": "Bearer s3cret"}).status_code == 200
  assert client.post("/search", json=["who"]).status_code == 401
  assert client.get("/?q=who").status_code == 401
  assert client.get("/health").status_code == 200  # open, for load balancers' probes
  assert serve.create_app(Stub()).test_client().get("/search?q=who").status_code == 200


@pytest.mark.parametrize("argv, env, expect", [
    (["--port", "70000"], {}, "--port: expected a port number 0-65535"),
    (["--port", "-1"], {}, "--port: expected a port number 0-65535"),
    (["--port", "http"], {}, "--port: expected a port number 0-65535"),
    (["--host", "no-such-host.invalid"], {}, "--host: expected a resolvable host name"),
    (["--max_body_bytes", "0"], {}, "--max_body_bytes: expected an integer >= 1"),
    (["--max_question_chars", "x"], {}, "--max_question_chars: expected an integer >= 1"),
    (["--token", "two words"], {}, "--token: expected a non-empty token of printable ASCII"),
    ([], {"DPR_SERVE_TOKEN": ""}, "DPR_SERVE_TOKEN: expected a non-empty token"),
])
def test_bad_flags_are_one_line_before_anything_loads(tmp_path, capsys, monkeypatch, argv, env,
                                                      expect):
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  missing = tmp_path / "no-such-corpus.tsv"  # never read: the flags fail first
  rc = cli.serve(["--retriever", "bm25", "--passages", str(missing), *argv])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err


def test_a_port_in_use_is_one_error():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    s.listen()
    for kind in ("werkzeug", "waitress"):
      with pytest.raises(ValueError, match=r"--host/--port: .*127\.0\.0\.1:\d+ unusable"):
        serve_net.make_server(serve.create_app(Stub()), "127.0.0.1", s.getsockname()[1],
                              server=kind)


def test_server_choice_follows_the_host():
  assert serve_net.is_loopback(serve_net.resolve("localhost", 0))
  assert serve_net.is_loopback(["127.0.0.1", "::1"])
  assert not serve_net.is_loopback(["0.0.0.0"]) and not serve_net.is_loopback(["10.1.2.3"])


def _raw(port, head: bytes, body: bytes = b"") -> bytes:
  """One request over a socket; -> the response's status line."""
  with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
    c.sendall(head + body)
    return c.makefile("rb").readline()


@pytest.mark.parametrize("kind", ["waitress", "werkzeug"])
def test_a_50_mb_body_is_413_over_http(kind):
  server = serve.make_server(serve.create_app(Stub()), "127.0.0.1", 0, server=kind)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    head = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 52428800\r\n\r\n")
    assert _raw(server.port, head, b'["' + b"q" * 60000).startswith(b"HTTP/1.1 413")
  finally:
    server.shutdown()


# --- load: 500 mixed requests from 32 threads, against the CLI ----------------------------------

K = 5


@pytest.fixture(scope="module")
def bm25_files(serve_slice, tmp_path_factory):
  """300 SQuAD paragraphs, 50 questions about them, and `retrieve`'s BM25 results for them."""
  import shutil
  d = tmp_path_factory.mktemp("serve_load")
  for name in ("psgs.tsv", "qs.jsonl"):
    shutil.copy(serve_slice / name, d / name)
  assert cli.retrieve(["--retriever", "bm25", "--passages", str(d / "psgs.tsv"), "--questions",
                       str(d / "qs.jsonl"), "--k", str(K), "--out", str(d / "bm25.json")]) == 0
  return d


def _rss_mib() -> float:
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmRSS:"):
      return int(line.split()[1]) / 1024
  return float("nan")


def _request(port, token, path, body=None):
  req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                               data=json.dumps(body).encode() if body is not None else None,
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(req, timeout=60) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def mixed_request(port, token, questions, i):
  """Request i of a fixed mix -> (expected status, status, [(question, ids)])."""
  q = questions[i % len(questions)]
  kind = i % 10
  if kind < 6:
    status, r = _request(port, token, f"/search?{urllib.parse.urlencode({'q': q, 'k': K})}")
    return 200, status, [(r["question"], [h["id"] for h in r["hits"]])] if status == 200 else []
  if kind < 8:
    batch = [questions[(i + j) % len(questions)] for j in range(3)]
    status, r = _request(port, token, "/search", {"questions": batch, "k": K})
    return 200, status, [(x["question"], [h["id"] for h in x["hits"]])
                         for x in r.get("results", [])]
  if kind == 8:
    return 200, _request(port, token, "/health")[0], []
  bad = "/search?k=0&q=who" if i % 20 == 9 else "/search?q=" + "x" * 1001
  return 400, _request(port, token, bad)[0], []


def test_500_mixed_requests_from_32_threads_match_the_cli(bm25_files):
  from dpr_jax.retrieval.searcher import Searcher
  want = {r["question"]: [c["id"] for c in r["ctxs"]]
          for r in json.loads((bm25_files / "bm25.json").read_text())}
  questions = list(want)
  app = serve.create_app(Searcher(bm25_files / "psgs.tsv", retriever="bm25"), token="t0ken")
  server = serve.make_server(app, "127.0.0.1", 0, server="waitress", threads=8)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
      list(pool.map(lambda i: mixed_request(server.port, "t0ken", questions, i), range(100)))
      before = _rss_mib()
      out = list(pool.map(lambda i: mixed_request(server.port, "t0ken", questions, i),
                          range(500)))
      after = _rss_mib()
  finally:
    server.shutdown()
  assert [got for _, got, _ in out] == [expect for expect, _, _ in out]  # no error, no 5xx
  pairs = [p for _, _, ps in out for p in ps]
  assert len(pairs) == 300 + 100 * 3
  assert all(ids == want[q] for q, ids in pairs)
  assert after - before < 32, (before, after)  # MiB: no growth with the number of requests
