"""The network side of `dpr_jax.serve`: checking --host / --port / --token before anything is
loaded or bound, and the WSGI server that listens.

- A host that resolves only to loopback addresses (127.0.0.1, ::1, localhost) gets Werkzeug's
  threaded server; any other host gets waitress, a production WSGI server (pure Python, threads,
  its own request-body limit). `--server` chooses explicitly.
- The bearer token comes from `--token` or the DPR_SERVE_TOKEN environment variable (which, unlike
  a flag, does not show in the process list).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import socket

TOKEN_ENV = "DPR_SERVE_TOKEN"
SERVERS = ("auto", "waitress", "werkzeug")


def port(text: str) -> int:
  """A TCP port for --port: 1-65535, or 0 for a free port chosen by the system."""
  try:
    v = int(text)
  except ValueError:
    v = -1
  if not 0 <= v <= 65535:
    raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port), "
                                     f"found {text!r}")
  return v


def resolve(host: str, port_: int) -> list[str]:
  """The addresses `host` stands for; ValueError (naming --host) when it resolves to none."""
  try:
    infos = socket.getaddrinfo(host, port_, type=socket.SOCK_STREAM)
  except (socket.gaierror, UnicodeError) as e:
    reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
    raise ValueError(f"--host: expected a resolvable host name or an IP address, found {host!r} "
                     f"({reason})") from None
  return sorted({i[4][0] for i in infos})


def is_loopback(addresses: list[str]) -> bool:
  return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def token(flag: str | None) -> str | None:
  """--token, else $DPR_SERVE_TOKEN, else None; a token must be printable ASCII without spaces
  (it travels in an HTTP header)."""
  value, where = (flag, "--token") if flag is not None else (os.environ.get(TOKEN_ENV), TOKEN_ENV)
  if value is None:
    return None
  if not value or not all(33 <= ord(c) <= 126 for c in value):
    raise ValueError(f"{where}: expected a non-empty token of printable ASCII without spaces, "
                     f"found {len(value)} characters that are not")
  return value


class _Waitress:
  """waitress behind the interface of Werkzeug's server: `port`, `serve_forever`, `shutdown`."""

  def __init__(self, app, host, port_, threads, max_body_bytes):
    from waitress.server import create_server
    self._server = create_server(app, host=host, port=port_, threads=threads,
                                 max_request_body_size=max_body_bytes, ident="dpr_jax.serve",
                                 clear_untrusted_proxy_headers=True)
    listen = getattr(self._server, "effective_listen", None)
    self.port = listen[0][1] if listen else self._server.effective_port

  def serve_forever(self):
    self._server.run()

  def shutdown(self):
    from waitress import wasyncore
    self._server.task_dispatcher.shutdown()
    wasyncore.close_all(getattr(self._server, "map", None) or self._server._map)


def make_server(app, host: str = "127.0.0.1", port_: int = 8000, *, server: str = "auto",
                threads: int = 8, max_body_bytes: int = 1 << 20):
  """A listening server (`port`: the bound one, `serve_forever()`, `shutdown()`); `auto`: waitress
  unless `host` is loopback only. A port that cannot be bound is a ValueError naming the flags."""
  if server not in SERVERS:
    raise ValueError(f"--server: expected one of {SERVERS}, found {server!r}")
  if server == "auto":
    server = "werkzeug" if is_loopback(resolve(host, port_)) else "waitress"
  try:
    _try_bind(host, port_)  # Werkzeug prints and exits on a bind error: fail here instead
    if server == "waitress":
      return _Waitress(app, host, port_, threads, max_body_bytes)
  except OSError as e:
    raise ValueError(f"--host/--port: expected an address to listen on, found {host}:{port_} "
                     f"unusable ({e.strerror or e})") from None
  from werkzeug.serving import make_server as werkzeug_server
  return werkzeug_server(host, port_, app, threaded=True)


def _try_bind(host: str, port_: int):
  family, kind, _, _, address = socket.getaddrinfo(host, port_, type=socket.SOCK_STREAM)[0]
  with socket.socket(family, kind) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers do
    s.bind(address)
