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
Bad requests get a 4xx status and {"error": "..."}: 413 for a body over --max_body_bytes, 400 for
a question over --max_question_chars, 401 without the bearer token (--token or $DPR_SERVE_TOKEN;
/health stays open). A failure is a 500 with a generic message and a request id; the traceback
goes to the server's log under that id. The server binds to 127.0.0.1 unless --host says
otherwise: Werkzeug's threaded server on loopback, waitress on any other address (requests are
answered concurrently; the model and index are called one batch at a time).
"""
from __future__ import annotations

import hashlib
import hmac
import sys
import uuid

from flask import Flask, jsonify, render_template_string, request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge

from dpr_jax.tools import serve_net
from dpr_jax.tools.serve_page import PAGE

MAX_BODY_BYTES = 1 << 20   # a full batch of long questions is ~100 kB
MAX_QUESTION_CHARS = 1000  # the question encoder reads 64 tokens (~300 characters)


def _k(value, default: int, max_k: int) -> int:
  """k from a query string (text) or a JSON body (an integer)."""
  if value is None or value == "":
    return default
  try:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
      raise ValueError
    k = int(value)
  except ValueError:
    raise BadRequest(f"k must be an integer, got {str(value)[:20]!r}") from None
  if not 1 <= k <= max_k:
    raise BadRequest(f"k must be between 1 and {max_k}, got {k}")
  return k


def _limit(q: str, max_chars: int, what: str = "question") -> str:
  if len(q) > max_chars:
    raise BadRequest(f"{what}: expected at most {max_chars} characters, got {len(q)}")
  return q


def _question(max_chars: int) -> str:
  q = request.args.get("q", "").strip()
  if not q:
    raise BadRequest("missing question: give it as ?q=...")
  return _limit(q, max_chars)


def _batch(default_k: int, max_k: int, max_batch: int,
           max_chars: int) -> tuple[list[str], int]:
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
      raise BadRequest(f"question {i}: expected a non-empty string, got {str(q)[:80]!r}")
    _limit(q.strip(), max_chars, f"question {i}")
  return [q.strip() for q in body], _k(k, default_k, max_k)


def _hits(hits) -> list[dict]:
  return [{"rank": i + 1, "id": h.pid, "score": h.score, "title": h.title, "text": h.text}
          for i, h in enumerate(hits)]


def create_app(searcher, answerer=None, *, default_k: int = 10, max_k: int = 100,
               max_batch: int = 64, max_body_bytes: int = MAX_BODY_BYTES,
               max_question_chars: int = MAX_QUESTION_CHARS, token: str | None = None) -> Flask:
  """The Flask app over a loaded `Searcher` (and `Answerer`, for /answer); `token`: the bearer
  token every request but /health must carry."""
  app = Flask("dpr_jax.serve")
  app.json.sort_keys = False
  app.config["MAX_CONTENT_LENGTH"] = max_body_bytes  # also bounds bodies of unknown length
  _add_guards(app, max_body_bytes, token)
  _add_api(app, searcher, answerer, default_k, max_k, max_batch, max_question_chars)
  _add_page(app, searcher, answerer, default_k, max_k, max_question_chars)
  return app


def _add_guards(app, max_body_bytes, token):
  """Token, body size and error replies: no exception text or path ever reaches a client."""
  want = hashlib.sha256(f"Bearer {token}".encode()).digest() if token else None

  @app.before_request
  def guard():
    if want is not None and request.path != "/health":
      given = request.headers.get("Authorization", "").encode("utf-8", "replace")
      if not hmac.compare_digest(hashlib.sha256(given).digest(), want):
        return jsonify({"error": "missing or wrong bearer token: send Authorization: Bearer "
                        "<token>", "status": 401}), 401, {"WWW-Authenticate": "Bearer"}
    if (request.content_length or 0) > max_body_bytes:
      raise RequestEntityTooLarge()
    return None

  @app.errorhandler(HTTPException)
  def error(e):
    if isinstance(e, RequestEntityTooLarge):
      return jsonify({"error": f"request body over {max_body_bytes} bytes", "status": 413}), 413
    return jsonify({"error": e.description, "status": e.code}), e.code

  @app.errorhandler(Exception)
  def failure(e):
    rid = uuid.uuid4().hex[:16]
    app.logger.error("request %s (%s %s) failed", rid, request.method, request.path,
                     exc_info=e)
    return jsonify({"error": "internal error; the server's log has the details under this "
                    "request id", "request_id": rid, "status": 500}), 500, {"X-Request-Id": rid}


def _add_api(app, searcher, answerer, default_k, max_k, max_batch, max_chars):
  def need_reader():
    if answerer is None:
      raise NotFound("this server has no reader: start it with --reader to answer questions")

  @app.get("/health")
  def health():
    return jsonify({"status": "ok", "retriever": searcher.retriever, "passages": len(searcher),
                    "reader": answerer is not None, "max_k": max_k, "max_batch": max_batch})

  @app.get("/search")
  def search_one():
    q, k = _question(max_chars), _k(request.args.get("k"), default_k, max_k)
    return jsonify({"question": q, "k": k, "hits": _hits(searcher.search([q], k)[0])})

  @app.post("/search")
  def search_batch():
    qs, k = _batch(default_k, max_k, max_batch, max_chars)
    return jsonify({"k": k, "results": [{"question": q, "hits": _hits(h)}
                                        for q, h in zip(qs, searcher.search(qs, k))]})

  @app.get("/answer")
  def answer_one():
    need_reader()
    q, k = _question(max_chars), _k(request.args.get("k"), default_k, max_k)
    hits = searcher.search([q], k)
    return jsonify({"question": q, "k": k, "answer": answerer.answer([q], hits)[0],
                    "hits": _hits(hits[0])})

  @app.post("/answer")
  def answer_batch():
    need_reader()
    qs, k = _batch(default_k, max_k, max_batch, max_chars)
    hits = searcher.search(qs, k)
    return jsonify({"k": k, "results": [{"question": q, "answer": a, "hits": _hits(h)}
                                        for q, a, h in zip(qs, answerer.answer(qs, hits), hits)]})


def _add_page(app, searcher, answerer, default_k, max_k, max_chars):
  @app.get("/")
  def page():
    q = request.args.get("q", "").strip()
    view = {"q": q, "k": default_k, "max_k": max_k, "retriever": searcher.retriever,
            "size": len(searcher), "reader": answerer is not None, "hits": None, "answer": None,
            "error": None}
    try:
      view["k"] = _k(request.args.get("k"), default_k, max_k)
      _limit(q, max_chars)
    except BadRequest as e:
      view["error"] = e.description
      return render_template_string(PAGE, **view), 400
    if q:
      view["hits"] = searcher.search([q], view["k"])[0]
      if answerer is not None:
        view["answer"] = answerer.answer([q], [view["hits"]])[0]
    return render_template_string(PAGE, **view)


def make_server(app, host: str = "127.0.0.1", port: int = 8000, **kw):
  """A listening server (port 0: a free port, see `server.port`); `serve_forever()`,
  `shutdown()`. Keywords: `server`, `threads`, `max_body_bytes` (`serve_net.make_server`)."""
  return serve_net.make_server(app, host, port, **kw)


def _args(argv):
  from dpr_jax import cli
  from dpr_jax.retrieval.searcher import RETRIEVERS
  ap = cli.Parser("python -m dpr_jax.serve", __doc__)
  cli.add_model_args(ap, required=False)
  ap.add_argument("--passages", required=True,
                  help="the corpus: TSV (id, text, title), BEIR folder or MS MARCO collection")
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
  _network_args(ap)
  a = ap.parse_args(argv)
  if a.retriever != "bm25" and not (a.model and a.embeddings):
    ap.error(f"--retriever {a.retriever} needs --model and --embeddings")
  if not 1 <= a.k <= a.max_k:
    ap.error(f"--k must be between 1 and --max_k ({a.max_k}), got {a.k}")
  a.addresses = serve_net.resolve(a.host, a.port)  # before the model loads
  a.token = serve_net.token(a.token)
  return a


def _network_args(ap):
  from dpr_jax import cli
  g = ap.add_argument_group("network")
  g.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
  g.add_argument("--port", type=serve_net.port, default=8000, help="0: any free port")
  g.add_argument("--server", choices=serve_net.SERVERS, default="auto",
                 help="auto: Werkzeug on loopback, waitress on any other address")
  g.add_argument("--threads", type=cli.positive_int, default=8, help="waitress worker threads")
  g.add_argument("--max_body_bytes", type=cli.positive_int, default=MAX_BODY_BYTES,
                 help="larger request bodies get 413")
  g.add_argument("--max_question_chars", type=cli.positive_int, default=MAX_QUESTION_CHARS,
                 help="longer questions get 400")
  g.add_argument("--token", default=None, help=f"bearer token required of every request but "
                 f"/health (default: ${serve_net.TOKEN_ENV}; none: no authentication)")


def load(a):
  """-> (Searcher, Answerer or None) from the command-line flags."""
  from dpr_jax import cli
  from dpr_jax.reader.answerer import Answerer
  from dpr_jax.retrieval.searcher import Searcher
  searcher = Searcher(a.passages, model=a.model, embeddings=a.embeddings, retriever=a.retriever,
                      index=a.index, mesh_recall=a.mesh_recall, **cli.model_kwargs(a),
                      question_max_length=a.question_max_length, hybrid_lambda=a.hybrid_lambda,
                      hybrid_depth=a.hybrid_depth, bm25_k1=a.bm25_k1, bm25_b=a.bm25_b)
  answerer = Answerer(a.reader, a.reader_which, a.max_answer_length) if a.reader else None
  return searcher, answerer


def main(argv=None):
  a = _args(argv)
  if not a.token and not serve_net.is_loopback(a.addresses):
    print(f"warning: --host {a.host} serves the network without a bearer token (--token or "
          f"${serve_net.TOKEN_ENV})", file=sys.stderr, flush=True)
  searcher, answerer = load(a)
  app = create_app(searcher, answerer, default_k=a.k, max_k=a.max_k, max_batch=a.max_batch,
                   max_body_bytes=a.max_body_bytes, max_question_chars=a.max_question_chars,
                   token=a.token)
  server = make_server(app, a.host, a.port, server=a.server, threads=a.threads,
                       max_body_bytes=a.max_body_bytes)
  print(f"serving {a.retriever} retrieval over {len(searcher)} passages"
        f"{' with a reader' if answerer else ''} on http://{a.host}:{server.port}/"
        f"{' (bearer token required)' if a.token else ''}", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  return 0


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.serve())
