"""A test app whose failures are switched on by env vars from the blueprint.

Also: GET /env/KEY (a value of its env), /hog/N (allocate N MB), /sick (fail /health from now on), /disk/write/TEXT and /disk/read
(a notes file on the service's persistent disk).

HEALTH_STATUS: status /health answers (default 200). ERROR_EVERY=N: every Nth other request answers 500. CRASH_AFTER_HEALTH: seconds after the first
passing /health at which the process exits with code 3. SICK_AFTER_HEALTH: seconds after the first passing /health
at which /health starts failing (every other request is still served). VERSION file: the version in every body.
"""

import os
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
HEALTH_STATUS = int(os.environ.get("HEALTH_STATUS", "200"))
CRASH_AFTER = os.environ.get("CRASH_AFTER_HEALTH")
SICK_AFTER = os.environ.get("SICK_AFTER_HEALTH")
crash_armed = threading.Event()
HOG: list[bytes] = []
SICK = threading.Event()
ERROR_EVERY = int(os.environ.get("ERROR_EVERY", "0"))
COUNT = [0]


def crash_later(delay: float) -> None:
    time.sleep(delay)
    print("crashing on purpose", flush=True)
    os._exit(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        status, body = 200, f"version={VERSION}".encode()
        if self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "<unset>").encode()
        elif self.path.startswith("/header/"):
            body = (self.headers.get(self.path[8:]) or "<none>").encode()
        elif self.path.startswith("/hog/"):
            HOG.append(b"x" * (int(self.path[5:]) * 1024 * 1024))
            body = b"allocated"
        elif self.path.startswith("/disk/write/"):
            with open(os.path.join(os.environ["RENDER_DISK_MOUNT_PATH"], "notes.txt"), "a") as f:
                f.write(self.path[12:] + "\n")
            body = b"written"
        elif self.path == "/disk/read":
            try:
                with open(os.path.join(os.environ["RENDER_DISK_MOUNT_PATH"], "notes.txt")) as f:
                    body = f.read().encode()
            except FileNotFoundError:
                body = b""
        elif self.path == "/sick":
            SICK.set()
            body = b"sick from now on"
        elif self.path == "/health":
            status = 500 if SICK.is_set() else HEALTH_STATUS
            if CRASH_AFTER and status < 400 and not crash_armed.is_set():
                crash_armed.set()
                threading.Thread(target=crash_later, args=(float(CRASH_AFTER),), daemon=True).start()
            if SICK_AFTER and status < 400 and not crash_armed.is_set():
                crash_armed.set()
                threading.Timer(float(SICK_AFTER), SICK.set).start()
        if ERROR_EVERY and self.path != "/health":
            COUNT[0] += 1
            if COUNT[0] % ERROR_EVERY == 0:
                status, body = 500, b"failing on purpose"
        # one write per response: a crash (CRASH_AFTER_HEALTH) lands between two responses, never
        # inside one (a response cut in half cannot be replayed by any proxy; the request can)
        head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


port = int(os.environ["PORT"])
print(f"listening on {port} secret={os.environ.get('API_TOKEN', '')}", flush=True)
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
