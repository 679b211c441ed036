"""The slipstream example web app: standard library HTTP server plus PostgreSQL through psycopg.

Routes: GET /health (liveness: never touches the database), GET /notes, POST /notes (a JSON body
{"text": ...}), GET / (version and instance). Its version is in every response.
"""

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
STARTED = time.time()
DATABASE_URL = os.environ.get("DATABASE_URL")


def log(level: str, msg: str, **fields: object) -> None:
    print(json.dumps({"level": level, "msg": msg, "version": VERSION, **fields}), flush=True)


def connect():  # type: ignore[no-untyped-def]
    import psycopg
    return psycopg.connect(DATABASE_URL, connect_timeout=5, autocommit=True)


def wait_for_database(attempts: int = 20) -> None:
    """Readiness at start-up: refuse to serve (exit 1) when the database never answers."""
    for i in range(attempts):
        try:
            with connect() as conn:
                conn.execute("SELECT 1")
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            log("warn", "database not ready", attempt=i + 1, error=str(exc).splitlines()[0])
            time.sleep(0.5)
    log("error", "database unreachable; exiting")
    sys.exit(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall  # keep-alive, like a real app server

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.send_header("Access-Control-Allow-Origin", "*")  # the static front end is another host
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_json(200, {"status": "ok", "version": VERSION, "uptime": round(time.time() - STARTED, 2)})
        elif self.path == "/notes" and DATABASE_URL:
            with connect() as conn:
                rows = conn.execute("SELECT id, text FROM notes ORDER BY id").fetchall()
            self.send_json(200, {"version": VERSION, "notes": [{"id": r[0], "text": r[1]} for r in rows]})
        else:
            self.send_json(200, {"service": os.environ.get("RENDER_SERVICE_NAME", "python-web"),
                                 "version": VERSION, "instance": os.environ.get("RENDER_INSTANCE_ID", "local"),
                                 "greeting": os.environ.get("GREETING", "hello")})

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if self.path != "/notes" or not DATABASE_URL:
            self.send_json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            text = json.loads(self.rfile.read(length) or b"{}")["text"]
        except (ValueError, KeyError):
            self.send_json(400, {"error": 'send {"text": ...}'})
            return
        with connect() as conn:
            row = conn.execute("INSERT INTO notes(text) VALUES (%s) RETURNING id", (text,)).fetchone()
        self.send_json(201, {"id": row[0], "text": text})

    def log_message(self, fmt: str, *args: object) -> None:
        log("info", fmt % args)


def main() -> None:
    if DATABASE_URL:
        wait_for_database()
    port = int(os.environ.get("PORT", "10000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log("info", f"listening on {port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
