"""A search service: a retriever (and optionally a reader) loaded once behind an HTTP JSON API.

  python -m dpr_jax.serve --model minilm --pooling mean --embeddings emb/squad \\
      --passages ../shared/data/squad/paragraphs.tsv.gz [--reader runs/reader] \\
      [--retriever dense|bm25|hybrid] [--port 8000] [--host 127.0.0.1]

Endpoints (JSON unless noted; see docs/service.md):
  GET  /health                 what is loaded
  GET  /search?q=...&k=10      the top k passages: {question, k, hits: [{rank, id, score, title, text}]}
  POST /search                 a batch: ["q1", "q2"] or {"questions": [...], "k": 10}
  GET  /answer?q=...&k=10      with --reader: the answer read from the top k passages, and the hits
  POST /answer                 a batch, as POST /search
  GET  /?q=...&k=10            an HTML page: question box, ranked passages, the answer highlighted
Bad requests get a 4xx status and {"error": "..."}. The server binds to 127.0.0.1 unless --host
says otherwise; it is Werkzeug's threaded server (requests are answered concurrently; the model
and index are called one batch at a time).
"""
from __future__ import annotations

import sys

from flask import Flask, jsonify, render_template_string, request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

from dpr_jax.tools.serve_page import PAGE


def _k(value, default: int, max_k: int) -> int:
  """k from a query string (text) or a JSON body (an integer)."""
  if value is None or value == "":
    return default
  try:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
      raise ValueError
    k = int(value)
  except ValueError:
    raise BadRequest(f"k must be an integer, got {value!r}") from None
  if not 1 <= k <= max_k:
    raise BadRequest(f"k must be between 1 and {max_k}, got {k}")
  return k


def _question() -> str:
  q = request.args.get("q", "").strip()
  if not q:
    raise BadRequest("missing question: give it as ?q=...")
  return q


def _batch(default_k: int, max_k: int, max_batch: int) -> tuple[list[str], int]:
  """A POST body: a JSON list of questions, or {"questions": [...], "k": n}."""
  body = request.get_json(silent=True)
  if body is None:
    raise BadRequest("expected a JSON body: a list of questions or {\"questions\": [...], "
                     "\"k\": n} (with Content-Type: application/json)")
  k = request.args.get("k")
  if isinstance(body, dict):
    unknown = set(body) - {"questions", "k"}
    if unknown:
      raise BadRequest(f"unknown field(s) {sorted(unknown)}; expected questions and k")
    k = body.get("k", k)
    body = body.get("questions")
  if not isinstance(body, list) or not body:
    raise BadRequest("expected a non-empty JSON list of questions")
  if len(body) > max_batch:
    raise BadRequest(f"at most {max_batch} questions a request, got {len(body)}")
  for i, q in enumerate(body):
    if not isinstance(q, str) or not q.strip():
      raise BadRequest(f"question {i}: expected a non-empty string, got {q!r}")
  return [q.strip() for q in body], _k(k, default_k, max_k)


def _hits(hits) -> list[dict]:
  return [{"rank": i + 1, "id": h.pid, "score": h.score, "title": h.title, "text": h.text}
          for i, h in enumerate(hits)]


def create_app(searcher, answerer=None, *, default_k: int = 10, max_k: int = 100,
               max_batch: int = 64) -> Flask:
  """The Flask app over a loaded `Searcher` (and `Answerer`, for /answer)."""
  app = Flask("dpr_jax.serve")
  app.json.sort_keys = False

  @app.errorhandler(HTTPException)
  def error(e):
    return jsonify({"error": e.description, "status": e.code}), e.code

  @app.errorhandler(Exception)
  def failure(e):
    app.logger.exception("request failed")
    return jsonify({"error": f"internal error: {type(e).__name__}: {e}", "status": 500}), 500

  _add_api(app, searcher, answerer, default_k, max_k, max_batch)
  _add_page(app, searcher, answerer, default_k, max_k)
  return app


def _add_api(app, searcher, answerer, default_k, max_k, max_batch):
  def need_reader():
    if answerer is None:
      raise NotFound("this server has no reader: start it with --reader to answer questions")

  @app.get("/health")
  def health():
    return jsonify({"status": "ok", "retriever": searcher.retriever, "passages": len(searcher),
                    "reader": answerer is not None, "max_k": max_k, "max_batch": max_batch})

  @app.get("/search")
  def search_one():
    q, k = _question(), _k(request.args.get("k"), default_k, max_k)
    return jsonify({"question": q, "k": k, "hits": _hits(searcher.search([q], k)[0])})

  @app.post("/search")
  def search_batch():
    qs, k = _batch(default_k, max_k, max_batch)
    return jsonify({"k": k, "results": [{"question": q, "hits": _hits(h)}
                                        for q, h in zip(qs, searcher.search(qs, k))]})

  @app.get("/answer")
  def answer_one():
    need_reader()
    q, k = _question(), _k(request.args.get("k"), default_k, max_k)
    hits = searcher.search([q], k)
    return jsonify({"question": q, "k": k, "answer": answerer.answer([q], hits)[0],
                    "hits": _hits(hits[0])})

  @app.post("/answer")
  def answer_batch():
    need_reader()
    qs, k = _batch(default_k, max_k, max_batch)
    hits = searcher.search(qs, k)
    return jsonify({"k": k, "results": [{"question": q, "answer": a, "hits": _hits(h)}
                                        for q, a, h in zip(qs, answerer.answer(qs, hits), hits)]})


def _add_page(app, searcher, answerer, default_k, max_k):
  @app.get("/")
  def page():
    q = request.args.get("q", "").strip()
    view = {"q": q, "k": default_k, "max_k": max_k, "retriever": searcher.retriever,
            "size": len(searcher), "reader": answerer is not None, "hits": None, "answer": None,
            "error": None}
    try:
      view["k"] = _k(request.args.get("k"), default_k, max_k)
    except BadRequest as e:
      view["error"] = e.description
      return render_template_string(PAGE, **view), 400
    if q:
      view["hits"] = searcher.search([q], view["k"])[0]
      if answerer is not None:
        view["answer"] = answerer.answer([q], [view["hits"]])[0]
    return render_template_string(PAGE, **view)


def make_server(app, host: str = "127.0.0.1", port: int = 8000):
  """A threaded Werkzeug server (port 0: a free port, see `server.port`); `serve_forever()`."""
  from werkzeug.serving import make_server as werkzeug_server
  return werkzeug_server(host, port, app, threaded=True)


def _args(argv):
  from dpr_jax import cli
  from dpr_jax.retrieval.searcher import RETRIEVERS
  ap = cli.Parser("python -m dpr_jax.serve", __doc__)
  cli.add_model_args(ap, required=False)
  ap.add_argument("--passages", required=True, help="the corpus TSV (id, text, title)")
  ap.add_argument("--retriever", choices=RETRIEVERS, default="dense")
  cli.add_index_args(ap)
  ap.add_argument("--hybrid_lambda", type=float, default=1.1, help="BM25 + lambda * dense")
  ap.add_argument("--hybrid_depth", type=cli.positive_int, default=1000, help="candidates from each retriever")
  ap.add_argument("--bm25_k1", type=float, default=0.9)
  ap.add_argument("--bm25_b", type=float, default=0.4)
  ap.add_argument("--question_max_length", type=cli.positive_int, default=64)
  ap.add_argument("--reader", help="reader training workdir (enables /answer)")
  ap.add_argument("--reader_which", choices=["best", "latest"], default="best")
  ap.add_argument("--max_answer_length", type=cli.positive_int, default=10, help="tokens (DPR: 10)")
  ap.add_argument("--k", type=cli.positive_int, default=10, help="passages when a request does not say")
  ap.add_argument("--max_k", type=cli.positive_int, default=100, help="largest k a request may ask for")
  ap.add_argument("--max_batch", type=cli.positive_int, default=64, help="most questions in one POST")
  ap.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
  ap.add_argument("--port", type=int, default=8000)
  a = ap.parse_args(argv)
  if a.retriever != "bm25" and not (a.model and a.embeddings):
    ap.error(f"--retriever {a.retriever} needs --model and --embeddings")
  if not 1 <= a.k <= a.max_k:
    ap.error(f"--k must be between 1 and --max_k ({a.max_k}), got {a.k}")
  return a


def load(a):
  """-> (Searcher, Answerer or None) from the command-line flags."""
  from dpr_jax import cli
  from dpr_jax.retrieval.searcher import Answerer, Searcher
  searcher = Searcher(a.passages, model=a.model, embeddings=a.embeddings, retriever=a.retriever,
                      index=a.index, mesh_recall=a.mesh_recall, **cli.model_kwargs(a),
                      question_max_length=a.question_max_length, hybrid_lambda=a.hybrid_lambda,
                      hybrid_depth=a.hybrid_depth, bm25_k1=a.bm25_k1, bm25_b=a.bm25_b)
  answerer = Answerer(a.reader, a.reader_which, a.max_answer_length) if a.reader else None
  return searcher, answerer


def main(argv=None):
  a = _args(argv)
  searcher, answerer = load(a)
  server = make_server(create_app(searcher, answerer, default_k=a.k, max_k=a.max_k,
                                  max_batch=a.max_batch), a.host, a.port)
  print(f"serving {a.retriever} retrieval over {len(searcher)} passages"
        f"{' with a reader' if answerer else ''} on http://{a.host}:{server.port}/", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  return 0


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.serve())
