"""wrk, the load generator: argv building, the counting Lua script, and output parsing (pure),
plus one bounded runner.

wrk prints its own summary; the Lua script adds one line, ``LUA 2xx=.. non2xx=.. bodyA=..
bodyB=..``, counting statuses and which upstream answered (bodies ``ok A``/``ok B``). A script
with a ``response`` callback makes wrk read every body, so it is used only where the counts are
needed (the flip runs); the throughput runs rely on wrk's own "Non-2xx or 3xx" line.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

COUNT_LUA = """\
-- Counts 2xx / non-2xx responses and which upstream answered, summed over wrk's threads.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok2xx, non2xx, body_a, body_b = 0, 0, 0, 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok2xx = ok2xx + 1 else non2xx = non2xx + 1 end
  if body == "ok A" then body_a = body_a + 1 elseif body == "ok B" then body_b = body_b + 1 end
end

function done(summary, latency, requests)
  local t = {ok2xx = 0, non2xx = 0, body_a = 0, body_b = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  io.write(string.format("LUA 2xx=%d non2xx=%d bodyA=%d bodyB=%d\\n",
                         t.ok2xx, t.non2xx, t.body_a, t.body_b))
end
"""

_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_LUA = re.compile(r"^LUA (.*)$", re.M)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests: int
    duration_s: float
    rps: float
    percentiles_ms: dict[int, float]  # 50, 75, 90, 99 -> ms
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    non2xx_or_3xx: int = 0  # wrk's own count
    lua: dict[str, int] = field(default_factory=dict)  # counts from COUNT_LUA, if used

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms.get(50, float("nan"))

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms.get(99, float("nan"))

    @property
    def errors(self) -> int:
        """Requests that failed at the socket level (connect, read, write, timeout)."""
        return sum(self.socket_errors.values())

    @property
    def non2xx(self) -> int:
        """Non-2xx responses: the script's count when it ran, else wrk's own line."""
        return self.lua.get("non2xx", self.non2xx_or_3xx)

    @property
    def failed(self) -> int:
        """Every request that did not end in a 2xx: non-2xx answers plus socket errors."""
        return self.non2xx + self.errors


def parse_time_ms(value: str, unit: str) -> float:
    """A wrk time such as ('1.05', 'ms') or ('312.45', 'us') in milliseconds."""
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's summary (with ``--latency``, optionally the COUNT_LUA line)."""
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    if requests is None or rps is None:
        raise ValueError(f"not a wrk summary: {text[-300:]!r}")
    percentiles = {int(p): parse_time_ms(v, u) for p, v, u in _PERCENTILE.findall(text)}
    socket = _SOCKET.search(text)
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=False))
        if socket
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    non2xx = _NON2XX.search(text)
    lua_line = _LUA.search(text)
    lua = {k: int(v) for k, v in (kv.split("=", 1) for kv in lua_line.group(1).split())} if lua_line else {}
    return WrkResult(
        requests=int(requests.group(1)),
        duration_s=parse_time_ms(requests.group(2), requests.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        percentiles_ms=percentiles,
        socket_errors=errors,
        non2xx_or_3xx=int(non2xx.group(1)) if non2xx else 0,
        lua=lua,
    )


def build_wrk_argv(
    url: str, *, threads: int, connections: int, seconds: int, host: str | None = None, script: Path | None = None
) -> list[str]:
    """The wrk command line for one bounded run with latency percentiles."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"bench traffic goes to loopback only, not {url}")
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    if script is not None:
        argv += ["-s", str(script)]
    return argv + [url]


def run_wrk(argv: list[str], seconds: int) -> WrkResult:
    """Run wrk (killed if it outlives its duration by 15 s) and parse its summary."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 15)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return parse_wrk(proc.stdout)
