"""A plain HTTP server on loopback for revocation data: files of a directory by GET (CRLs, as
a CA's distribution point), and optional handlers by path (an OCSP responder, a slow server).
It runs on a thread of the test process and counts the requests it answered."""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RevocationHTTPServer"]

# path -> (request body) -> (status, body); None: serve the file of that name.
Handler = Callable[[bytes], tuple[int, bytes]]


class RevocationHTTPServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.handlers: dict[str, Handler] = {}
        self.delays: dict[str, float] = {}  # path -> seconds to wait before answering
        self.without_length: set[str] = set()  # paths answered without Content-Length (until close)
        self.requests: Counter[str] = Counter()
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bytes) -> None:
                path = self.path.split("?", 1)[0]
                server.requests[path] += 1
                time.sleep(server.delays.get(path, 0.0))
                handler = server.handlers.get(path)
                if handler is not None:
                    status, content = handler(body)
                else:
                    file = server.directory / path.lstrip("/")
                    status, content = (200, file.read_bytes()) if path != "/" and file.is_file() else (404, b"")
                self.send_response(status)
                if path not in server.without_length:
                    self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length))

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll: shutdown() waits for it (0.5 s by default, at every test's end).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="revocation-http",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
