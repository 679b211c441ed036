"""The slipstream example web app: standard library only, its version in every response."""

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
STARTED = time.time()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real app server

    def do_GET(self) -> None:
        if self.path == "/health":  # liveness: no database, answers at once
            body = {"status": "ok", "version": VERSION, "uptime": round(time.time() - STARTED, 2)}
        else:
            body = {"service": os.environ.get("RENDER_SERVICE_NAME", "python-web"), "version": VERSION,
                    "instance": os.environ.get("RENDER_INSTANCE_ID", "local"), "path": self.path}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write(json.dumps({"level": "info", "msg": fmt % args, "version": VERSION}) + "\n")
        sys.stdout.flush()


def main() -> None:
    port = int(os.environ.get("PORT", "10000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"level": "info", "msg": f"listening on {port}", "version": VERSION}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
