"""A small static HTTP server for the demo site, bound to a loopback address only.

    with DemoServer(site_root) as server:
        crawl(server.base_url + "/")

or from a shell: ``python -m dataset_platform.demo.server OUT_DIR [--port N]`` (generates the site
into ``OUT_DIR`` if it is absent, then serves ``OUT_DIR/site`` until Ctrl-C).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import threading
from collections.abc import Sequence
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["CONTENT_TYPES", "DemoServer", "main"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
}
_NOT_FOUND = (
    b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>"
    b"<body><h1>Not Found</h1><p>The requested page does not exist.</p></body></html>\n"
)


def _loopback(host: str) -> str:
    """The loopback IP address to bind for ``host``; ValueError for anything else."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"DemoServer binds to a loopback address only (127.0.0.1, ::1), got {host!r}") from None
    if not ip.is_loopback:
        raise ValueError(f"DemoServer binds to a loopback address only (127.0.0.1, ::1), got {host!r}")
    return str(ip)


class _Handler(BaseHTTPRequestHandler):
    """GET/HEAD of regular files under the server's root; everything else is 404 (or 501)."""

    server: _Server
    server_version = "DemoDaily/1.0"
    protocol_version = "HTTP/1.1"

    def resolve(self) -> Path | None:
        """The file a request path names, or None (missing, a directory, or outside the root)."""
        path = unquote(urlsplit(self.path).path)
        if not path.startswith("/") or "\x00" in path or "\\" in path:
            return None
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return None
        root = self.server.root
        target = root.joinpath(*parts) if parts else root
        if target.is_dir():
            target = target / "index.html"
        try:
            real = target.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(root) or not real.is_file():
            return None
        return real

    def do_GET(self) -> None:
        self.respond(body=True)

    def do_HEAD(self) -> None:
        self.respond(body=False)

    def respond(self, body: bool) -> None:
        target = self.resolve()
        if target is None:
            self.send_response(HTTPStatus.NOT_FOUND)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(_NOT_FOUND)))
            self.end_headers()
            if body:
                self.wfile.write(_NOT_FOUND)
            return
        data = target.read_bytes()
        mtime = int(target.stat().st_mtime)
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                if int(parsedate_to_datetime(since).timestamp()) >= mtime:
                    self.send_response(HTTPStatus.NOT_MODIFIED)
                    self.send_header("Last-Modified", formatdate(mtime, usegmt=True))
                    self.end_headers()
                    return
            except (TypeError, ValueError, IndexError, OverflowError):
                pass  # a malformed date: serve the file
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", formatdate(mtime, usegmt=True))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: Path, verbose: bool, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.root = root
        self.verbose = verbose
        super().__init__(address, _Handler)


class DemoServer:
    """Serves ``site_root`` over HTTP on a loopback address in a daemon thread (a context manager)."""

    def __init__(self, site_root: Path, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host = _loopback(host)
        self.site_root = Path(site_root).resolve()
        if not self.site_root.is_dir():
            raise FileNotFoundError(f"site root {self.site_root} is not a directory")
        self.requested_port = int(port)
        self.verbose = verbose
        self.port = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> DemoServer:
        if self._httpd is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._httpd = _Server((self.host, self.requested_port), self.site_root, self.verbose, family)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"demo-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dataset_platform.demo.server OUT_DIR [--port N] [--host H] [--verbose]``."""
    parser = argparse.ArgumentParser(prog="python -m dataset_platform.demo.server",
                                     description="Generate (if absent) and serve the demo site on a loopback address.")
    parser.add_argument("out_dir", type=Path, help="folder holding site/ and manifest.json (generated if absent)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    site_root = args.out_dir / "site"
    if not (site_root / "index.html").is_file() or not (args.out_dir / "manifest.json").is_file():
        from dataset_platform.demo.site import generate_site

        manifest = generate_site(args.out_dir)
        print(f"generated {len(manifest['pages'])} paths into {args.out_dir}", flush=True)
    try:
        server = DemoServer(site_root, host=args.host, port=args.port, verbose=args.verbose)
    except ValueError as e:
        parser.error(str(e))
    with server:
        print(f"serving {site_root} at {server.base_url}/ (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
