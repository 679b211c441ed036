"""An app that tries, as its own service user, to reach what must be out of its reach, and says
over HTTP how each attempt ended ("ok" or the errno name)."""

import errno
import json
import os
import pwd
import socket
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def attempt(action, path):
    try:
        action(path)
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))


def read(path):
    with open(path, "rb") as f:
        f.read(1)


def write(path):
    with open(path, "w") as f:
        f.write("probe\n")


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    finally:
        s.close()


def send(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(b"forged access line", str(path))
    finally:
        s.close()


def probe(other_build, other_file):
    state = Path(os.environ["STATE_HOME"])
    home = Path(os.environ["HOME"])
    forbidden = {
        "read master.key": attempt(read, state / "master.key"),
        "read state.db": attempt(read, state / "state.db"),
        "list the state directory": attempt(os.listdir, state),
        "list another service's builds": attempt(os.listdir, other_build),
        "read another service's source": attempt(read, other_file),
        "connect to the API socket": attempt(connect, state / "run" / "api.sock"),
        "send to the access-log socket": attempt(send, state / "run" / "access.sock"),
        "write in the state directory": attempt(write, state / "slipstream-probe"),
        "write in builds/": attempt(write, state / "builds" / "slipstream-probe"),
        "write in instances/": attempt(write, state / "instances" / "slipstream-probe"),
        "write in /etc": attempt(write, "/etc/slipstream-probe"),
        "write in /usr/local/bin": attempt(write, "/usr/local/bin/slipstream-probe"),
    }
    allowed = {
        "write in its build": attempt(write, Path.cwd() / "probe.out"),
        "write in HOME": attempt(write, home / "probe.out"),
        "write in /tmp": attempt(write, f"/tmp/slipstream-probe-{os.getpid()}"),
    }
    if "SLIPSTREAM_DISK_PATH" in os.environ:
        allowed["write on its disk"] = attempt(write, Path(os.environ["SLIPSTREAM_DISK_PATH"]) / "probe.out")
    return {
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "uid": os.geteuid(),
        "home_owner": home.stat().st_uid,
        "built_by": Path("built_by").read_text().strip(),
        "predeploy_by": (home / "predeploy_by").read_text().strip(),
        "forbidden": forbidden,
        "allowed": allowed,
    }


def fork_bomb(cap=4096):
    """Start sleepers until the kernel refuses a fork (or ``cap``); then end them all."""
    children, stopped_by = [], "cap"
    try:
        while len(children) < cap:
            try:
                pid = os.fork()
            except OSError as exc:
                stopped_by = errno.errorcode.get(exc.errno or 0, str(exc))
                break
            if pid == 0:
                try:
                    os.execv("/bin/sleep", ["sleep", "60"])
                finally:
                    os._exit(127)
            children.append(pid)
    finally:
        for pid in children:
            os.kill(pid, 9)
        for pid in children:
            os.waitpid(pid, 0)
    return {"forked": len(children), "stopped_by": stopped_by}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        code = 200
        if url.path == "/probe":
            q = parse_qs(url.query)
            try:
                body = json.dumps(probe(q["build"][0], q["file"][0])).encode()
            except Exception:
                code, body = 500, traceback.format_exc().encode()
        elif url.path == "/forkbomb":
            body = json.dumps(fork_bomb()).encode()
        else:
            body = b"ok"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
