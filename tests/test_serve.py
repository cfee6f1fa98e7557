"""The search service over HTTP: the packaged MiniLM over the first 300 SQuAD paragraphs, a
threaded server on a free loopback port, a real HTTP client; results checked against
`python -m dpr_jax.retrieve` on the same files."""
import concurrent.futures
import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import ml_collections
import numpy as np
import pytest
from markupsafe import escape

from dpr_jax.data.corpus import read_corpus
from dpr_jax.retrieval import retrieve
from dpr_jax.reader.answerer import Answerer
from dpr_jax.retrieval.searcher import Searcher
from dpr_jax.tools import serve

K = 5
MODEL = ["--model", "minilm", "--pooling", "mean"]


@pytest.fixture(scope="module")
def files(serve_slice, tmp_path_factory):
  """The corpus slice, 50 questions about it, its MiniLM embeddings, the CLI's results."""
  import shutil
  d = tmp_path_factory.mktemp("serve")
  for name in ("psgs.tsv", "qs.jsonl"):
    shutil.copy(serve_slice / name, d / name)
  from dpr_jax.models.tokenization import Tokenizer
  from dpr_jax.retrieval.encoding import encode_corpus
  from dpr_jax.training.loading import load_model
  model, tok_path, desc = load_model("minilm", pooling="mean")
  encode_corpus(model, Tokenizer(tok_path, passage_max_length=128), read_corpus(d / "psgs.tsv"),
                d / "emb", description=desc, max_length=128)
  common = [*MODEL, "--embeddings", str(d / "emb"), "--passages", str(d / "psgs.tsv"),
            "--questions", str(d / "qs.jsonl"), "--k", str(K)]
  for kind in ("dense", "hybrid", "bm25"):
    retrieve.main([*common, "--retriever", kind, "--out", str(d / f"{kind}.json")])
  return d


@pytest.fixture(scope="module")
def reader_dir(files):
  """A tiny random-init reader (one training step on the dense results)."""
  from dpr_jax.configs import reader_squad
  from dpr_jax.reader import train as reader_train
  c = reader_squad.get_config()
  c.model.init = "random"
  c.model.bert = ml_collections.ConfigDict(dict(hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=4, intermediate_size=64,
                                                max_position_embeddings=128))
  c.data.train_results, c.data.dev_results = str(files / "dense.json"), ""
  c.data.passages, c.data.max_length = "", 96
  c.train.batch_questions, c.train.max_steps, c.train.log_every = 8, 1, 1
  reader_train.train(c, files / "reader")
  return files / "reader"


@pytest.fixture(scope="module")
def url(files, reader_dir):
  a = serve._args([*MODEL, "--embeddings", str(files / "emb"), "--passages",
                   str(files / "psgs.tsv"), "--reader", str(reader_dir), "--reader_which",
                   "latest", "--port", "0", "--max_k", "20"])
  assert a.host == "127.0.0.1"
  server = serve.make_server(serve.create_app(*serve.load(a), max_k=a.max_k), a.host, a.port)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield f"http://127.0.0.1:{server.port}"
  server.shutdown()


def _call(url, path, body=None, method=None, raw=None):
  data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
  req = urllib.request.Request(url + path, data=data, method=method,
                               headers={"Content-Type": "application/json"} if data else {})
  try:
    with urllib.request.urlopen(req, timeout=120) as r:
      text = r.read().decode()
      return r.status, json.loads(text) if r.headers.get_content_type() == "application/json" \
          else text
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read().decode())


def _q(text, k=K):
  return "?" + urllib.parse.urlencode({"q": text, "k": k})


def _cli(files, kind):
  return json.loads((files / f"{kind}.json").read_text())


def test_health_and_search_match_the_cli(url, files):
  status, h = _call(url, "/health")
  assert status == 200 and h["status"] == "ok" and h["passages"] == 300 and h["reader"]
  want = _cli(files, "dense")[0]
  status, r = _call(url, "/search" + _q(want["question"]))
  assert status == 200 and r["question"] == want["question"] and r["k"] == K
  assert [x["id"] for x in r["hits"]] == [c["id"] for c in want["ctxs"]]
  assert [x["rank"] for x in r["hits"]] == [1, 2, 3, 4, 5]
  np.testing.assert_allclose([x["score"] for x in r["hits"]], [c["score"] for c in want["ctxs"]],
                             rtol=1e-4, atol=1e-5)
  assert r["hits"][0]["title"] == want["ctxs"][0]["title"]
  assert r["hits"][0]["text"] == want["ctxs"][0]["text"]


def test_fifty_concurrent_requests_match_the_cli(url, files):
  """GETs and batch POSTs at once from 50 threads: every answer is the CLI's, in order."""
  want = {r["question"]: [c["id"] for c in r["ctxs"]] for r in _cli(files, "dense")}
  questions = list(want)
  assert len(questions) == 50

  def ask(i):
    if i % 5 == 4:  # every fifth request is a batch of three
      batch = [questions[(i + j) % 50] for j in range(3)]
      status, r = _call(url, "/search", {"questions": batch, "k": K})
      return status, [(x["question"], [h["id"] for h in x["hits"]]) for x in r["results"]]
    status, r = _call(url, "/search" + _q(questions[i]))
    return status, [(r["question"], [h["id"] for h in r["hits"]])]

  with concurrent.futures.ThreadPoolExecutor(50) as pool:
    answers = list(pool.map(ask, range(50)))
  got = [pair for status, pairs in answers for pair in pairs if status == 200]
  assert len(got) == 40 + 10 * 3
  for q, ids in got:
    assert ids == want[q], q


def test_batch_post_forms(url, files):
  want = _cli(files, "dense")[:3]
  qs = [r["question"] for r in want]
  status, r = _call(url, "/search?k=2", qs)  # a bare list; k from the query string
  assert status == 200 and r["k"] == 2 and [x["question"] for x in r["results"]] == qs
  assert [[h["id"] for h in x["hits"]] for x in r["results"]] == \
      [[c["id"] for c in w["ctxs"][:2]] for w in want]


@pytest.mark.parametrize("kind", ["hybrid", "bm25"])
def test_hybrid_and_bm25_searchers_match_the_cli(files, kind):
  s = Searcher(files / "psgs.tsv", model="minilm", pooling="mean", embeddings=files / "emb",
               retriever=kind)
  want = _cli(files, kind)[:10]
  got = s.search([r["question"] for r in want], K)
  for w, hits in zip(want, got):
    assert [h.pid for h in hits] == [c["id"] for c in w["ctxs"]], w["question"]
    np.testing.assert_allclose([h.score for h in hits], [c["score"] for c in w["ctxs"]],
                               rtol=1e-4, atol=1e-4)


def test_answer_and_page(url, files):
  q = _cli(files, "dense")[1]["question"]
  status, r = _call(url, "/answer" + _q(q, 3))
  assert status == 200 and len(r["hits"]) == 3
  a = r["answer"]
  assert set(a) == {"text", "passage_id", "passage_rank", "title", "score", "start", "end"}
  passage = r["hits"][a["passage_rank"]]
  assert a["passage_id"] == passage["id"] and a["text"]
  assert passage["text"][a["start"]:a["end"]] == a["text"]
  status, b = _call(url, "/answer", [q, "<b>who?</b>"])
  assert status == 200 and [x["question"] for x in b["results"]] == [q, "<b>who?</b>"]
  # the same answer; its score agrees to float rounding (batched pairs may pad to other shapes)
  got = b["results"][0]["answer"]
  assert {k: v for k, v in got.items() if k != "score"} == {k: v for k, v in a.items()
                                                            if k != "score"}
  assert got["score"] == pytest.approx(a["score"], rel=1e-5, abs=1e-5)
  assert len(b["results"][1]["hits"]) == 10
  status, html = _call(url, "/" + _q(q, 3))
  assert status == 200 and html.count("<li>") == 3
  assert f"<mark>{escape(a['text'])}</mark>" in html and str(escape(r["hits"][0]["title"])) in html
  status, html = _call(url, "/" + _q("<script>x</script>", 1))
  assert "<script>x" not in html and "&lt;script&gt;x" in html


@pytest.mark.parametrize("path, body, method, raw, status", [
    ("/search", None, None, None, 400),                    # no q
    ("/search?q=%20", None, None, None, 400),              # blank q
    ("/search?q=who&k=0", None, None, None, 400),
    ("/search?q=who&k=-3", None, None, None, 400),
    ("/search?q=who&k=21", None, None, None, 400),         # above --max_k
    ("/search?q=who&k=two", None, None, None, 400),
    ("/search", None, "POST", b"{not json", 400),
    ("/search", [], "POST", None, 400),
    ("/search", ["ok", 3], "POST", None, 400),
    ("/search", {"questions": ["ok"], "k": "x"}, "POST", None, 400),
    ("/search", {"questions": ["ok"], "k": True}, "POST", None, 400),
    ("/search", {"question": ["ok"]}, "POST", None, 400),
    ("/answer?k=3", None, None, None, 400),
    ("/nowhere", None, None, None, 404),
    ("/search?q=who", None, "DELETE", None, 405),
])
def test_bad_requests_get_4xx_json(url, path, body, method, raw, status):
  got, r = _call(url, path, body, method, raw)
  assert got == status and r["status"] == status and r["error"]


def test_answer_without_reader_is_404_and_load_errors_are_one_line(files, capsys):
  s = Searcher(files / "psgs.tsv", retriever="bm25")
  client = serve.create_app(s).test_client()
  r = client.get("/answer?q=who")
  assert r.status_code == 404 and "--reader" in r.get_json()["error"]
  assert client.get("/search?q=who&k=3").get_json()["hits"][0]["rank"] == 1
  other = files / "other.tsv"
  other.write_text("id\ttext\ttitle\n1\tsome text\tT\n")
  from dpr_jax import cli
  rc = cli.serve([*MODEL, "--embeddings", str(files / "emb"), "--passages", str(other)])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and "expected embeddings of" in err[0] and "other.tsv" in err[0]


def test_answerer_reads_every_question(files, reader_dir):
  s = Searcher(files / "psgs.tsv", retriever="bm25")
  ans = Answerer(reader_dir, "latest")
  qs = [r["question"] for r in _cli(files, "bm25")[:9]]
  out = ans.answer(qs, s.search(qs, 4))
  assert len(out) == 9 and all(0 <= a["passage_rank"] < 4 for a in out)
  assert ans.answer([], []) == []


def test_a_failing_search_is_a_json_500():
  class Broken:
    retriever = "dense"

    def __len__(self):
      return 1

    def search(self, questions, k):
      raise RuntimeError("index unreadable")

  r = serve.create_app(Broken()).test_client().get("/search?q=who")
  assert r.status_code == 500 and r.get_json()["request_id"]
  assert "index unreadable" not in r.get_data(as_text=True)  # in the server's log only


def test_answer_offsets_and_highlight_are_the_span_read_not_the_first_occurrence(monkeypatch):
  """The reader read the second "Paris" of "Paris is in France. The capital is Paris." (its
  characters 35..40, counted by hand); /answer and the page mark that one, not the first."""
  from dpr_jax.reader import answerer as answerer_lib, predict
  from dpr_jax.retrieval.searcher import Hit
  text = "Paris is in France. The capital is Paris."
  hits = [Hit("p0", 2.0, "Other", "nothing here"), Hit("p7", 1.5, "France", text)]

  class OneCorpus:
    retriever = "bm25"

    def __len__(self):
      return 2

    def search(self, questions, k):
      return [hits[:k] for _ in questions]

  def read(forward, params, results, tok, **kw):  # the reader's output, made by hand
    return [{"prediction": "Paris", "passage_id": "p7", "passage_rank": 1, "title": "France",
             "passage": text, "start_char": 35, "end_char": 40, "score": 3.5}
            for _ in results]
  monkeypatch.setattr(predict, "predict", read)
  ans = object.__new__(answerer_lib.Answerer)
  ans.forward = ans.params = ans.tok = ans.mesh = None
  ans.max_answer_length, ans.batch_questions = 10, 1
  ans.lock = threading.Lock()
  client = serve.create_app(OneCorpus(), ans).test_client()
  a = client.get("/answer?q=capital+of+france&k=2").get_json()["answer"]
  assert (a["start"], a["end"]) == (35, 40) and a["text"] == "Paris"
  assert text.find("Paris") == 0  # the first occurrence, which must not be marked
  html = client.get("/?q=capital+of+france&k=2").get_data(as_text=True)
  assert "Paris is in France. The capital is <mark>Paris</mark>." in html
  assert html.count("<mark>") == 1
  # an empty answer marks nothing
  assert answerer_lib.answer_record({"prediction": "", "passage_id": "p7", "passage_rank": 1,
                                     "title": "France", "start_char": 0, "end_char": 0,
                                     "score": -1.0})["start"] is None
