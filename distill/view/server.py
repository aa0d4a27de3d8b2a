"""The viewer's HTTP server (stdlib http.server): the page, its JSON API and the run's PNGs.

    GET /                     the page (static/index.html, app.js, style.css: package data)
    GET /api/overview         stages, funnel, counts, reject reasons, plots, scores table
    GET /api/problems         ?offset&limit&q&only=all|none_kept
    GET /api/samples          ?offset&limit&status=all|kept|rejected&reason=CHECK&q=TEXT&problem=ID
    GET /api/eval             ?bench&offset&limit&q&show=all|differ|improved|regressed
    GET /api/kd               kd's disagreement record: per sample and phase, each token's teacher - student
    GET /run/<path>.png       a plot of the run

It listens on 127.0.0.1 by default: the traces may be private, and the page has no login.
"""
from __future__ import annotations

import inspect
import json
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from distill.errors import DistillError
from distill.view.layout import find_layout
from distill.view.queries import RunData

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
INTEGERS = ("offset", "limit")


def make_server(run_dir: Path, host: str = "127.0.0.1", port: int = 0, log=None) -> ThreadingHTTPServer:
    """A server for `run_dir`, bound but not yet serving (port 0: any free port; see `server_address`)."""
    data = RunData(find_layout(run_dir))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server hook
            url = urlparse(self.path)
            try:
                self.route(url.path, {k: v[-1] for k, v in parse_qs(url.query).items()})
            except DistillError as exc:
                self.send_json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away mid-answer

        def route(self, path: str, query: dict[str, str]) -> None:
            if path in ("/", "/index.html"):
                return self.send_static("index.html")
            if path.startswith("/static/"):
                return self.send_static(path.removeprefix("/static/"))
            if path.startswith("/run/"):
                return self.send_plot(unquote(path.removeprefix("/run/")))
            api = {"/api/overview": data.overview, "/api/problems": data.problems_page,
                   "/api/samples": data.samples_page, "/api/eval": data.eval_page, "/api/kd": data.kd_page}
            if path not in api:
                return self.send_json({"error": f"no such page: {path}"}, HTTPStatus.NOT_FOUND)
            return self.send_json(api[path](**arguments(api[path], query)))

        def send_static(self, name: str) -> None:
            if name not in STATIC:
                return self.send_json({"error": f"no such file: {name}"}, HTTPStatus.NOT_FOUND)
            self.send_bytes(files("distill.view").joinpath("static", name).read_bytes(), STATIC[name])

        def send_plot(self, relative: str) -> None:
            if relative not in data.layout.plots():  # only the run's PNGs, never another file
                return self.send_json({"error": f"no plot {relative} in this run"}, HTTPStatus.NOT_FOUND)
            self.send_bytes((data.layout.run_dir / relative).read_bytes(), "image/png")

        def send_json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_bytes(json.dumps(obj, ensure_ascii=False).encode(), "application/json; charset=utf-8", status)

        def send_bytes(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")  # a run still going changes under the page
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the http.server hook, its names
            if log is not None:
                log(format % args)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise DistillError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port "
                           "(0 takes any free one)") from None
    server.daemon_threads = True
    return server


def arguments(fn, query: dict[str, str]) -> dict[str, Any]:
    """The query string as keyword arguments of `fn`; an unknown name is an error, not silently ignored."""
    unknown = sorted(set(query) - set(inspect.signature(fn).parameters))
    if unknown:
        raise DistillError(f"unknown parameter(s) {', '.join(unknown)}; this page takes "
                           f"{', '.join(inspect.signature(fn).parameters)}")
    args: dict[str, Any] = dict(query)
    for name in INTEGERS:
        if name in args:
            try:
                args[name] = int(args[name])
            except ValueError:
                raise DistillError(f"{name} must be a whole number, got '{args[name]}'") from None
    return args


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 0, *, open_browser: bool = True,
          announce=print, log=None) -> None:
    """Serve `run_dir` until Ctrl-C; opens the page in the default browser unless told not to."""
    server = make_server(run_dir, host, port, log)
    url = url_of(server)
    announce(url)
    if open_browser:
        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
