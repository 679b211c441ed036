"""Loopback receivers for the notification tests: an HTTP webhook receiver and an SMTP sink.

Both record what they received; each answers from a script so a test can make the first attempts
fail (HTTP 503, SMTP 451) and check the retries.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Answers each POST with the next status of ``statuses`` (then 200) and keeps what it got."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@contextmanager
def webhook_receiver(statuses: list[int] | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(list(statuses or []))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                receiver.received.append(Received(dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: str


@dataclass
class SmtpSink:
    """A minimal SMTP server (RFC 5321 subset smtplib uses): keeps each message in ``mails``."""

    refuse_first: int = 0  # answer 451 (try again later) to this many MAIL commands first
    mails: list[Mail] = field(default_factory=list)
    port: int = 0


@contextmanager
def smtp_sink(refuse_first: int = 0) -> Iterator[SmtpSink]:
    sink = SmtpSink(refuse_first)
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 sink ESMTP")
            sender, rcpts = "", []
            while True:
                raw = self.rfile.readline()
                if not raw:
                    return
                verb = raw.decode().strip()
                upper = verb.upper()
                if upper.startswith(("EHLO", "HELO")):
                    self.reply("250 sink")
                elif upper.startswith("MAIL FROM:"):
                    with lock:
                        refuse = sink.refuse_first > 0
                        sink.refuse_first -= 1 if refuse else 0
                    if refuse:
                        self.reply("451 try again later")
                        continue
                    sender, rcpts = verb[10:].strip(" <>"), []
                    self.reply("250 ok")
                elif upper.startswith("RCPT TO:"):
                    rcpts.append(verb[8:].strip(" <>"))
                    self.reply("250 ok")
                elif upper == "DATA":
                    self.reply("354 go ahead")
                    lines = []
                    while (line := self.rfile.readline().decode()) not in (".\r\n", ".\n", ""):
                        lines.append(line[1:] if line.startswith("..") else line)
                    with lock:
                        sink.mails.append(Mail(sender, rcpts, "".join(lines)))
                    self.reply("250 queued")
                elif upper == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 ok")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    sink.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
