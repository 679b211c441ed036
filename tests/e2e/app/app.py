"""A test app whose failures are switched on by env vars from the blueprint.

HEALTH_STATUS: status /health answers (default 200). CRASH_AFTER_HEALTH: seconds after the first
passing /health at which the process exits with code 3. VERSION file: the version in every body.
"""

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
HEALTH_STATUS = int(os.environ.get("HEALTH_STATUS", "200"))
CRASH_AFTER = os.environ.get("CRASH_AFTER_HEALTH")
crash_armed = threading.Event()


def crash_later(delay: float) -> None:
    time.sleep(delay)
    print("crashing on purpose", flush=True)
    os._exit(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, body = 200, f"version={VERSION}".encode()
        if self.path == "/health":
            status = HEALTH_STATUS
            if CRASH_AFTER and status < 400 and not crash_armed.is_set():
                crash_armed.set()
                threading.Thread(target=crash_later, args=(float(CRASH_AFTER),), daemon=True).start()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


port = int(os.environ["PORT"])
print(f"listening on {port} secret={os.environ.get('API_TOKEN', '')}", flush=True)
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
