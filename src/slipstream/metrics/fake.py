"""A fake HAProxy for metrics tests and the bench: ``show stat`` CSV rendered from counters.

The header is HAProxy 2.6's own column list (as ``show stat`` prints it); rows fill the columns the
parser reads and leave the rest empty, as HAProxy does for fields that do not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,"
    "weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,"
    "rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,"
    "hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
    "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,"
    "agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,"
    "conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,"
    "srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,"
    "need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,"
)
COLUMNS = HEADER[2:].rstrip(",").split(",")


@dataclass
class FakeBackend:
    """The counters of one fake backend; tests and the bench bump them between rounds."""

    hrsp: dict[str, int]
    scur: int = 0
    rtime: int = 0
    ttime: int = 0
    mode: str = "http"


def render_show_stat(backends: Mapping[str, FakeBackend], servers_per_backend: int = 2) -> str:
    """``show stat -1 6 -1``-like CSV: each backend's server rows (empty counters) then its BACKEND row."""
    lines = [HEADER]
    for name, b in backends.items():
        for slot in range(servers_per_backend):
            lines.append(_row({"pxname": name, "svname": f"s{slot:02d}", "status": "MAINT", "mode": b.mode}))
        fields = {
            "pxname": name,
            "svname": "BACKEND",
            "scur": str(b.scur),
            "stot": str(sum(b.hrsp.values())),
            "status": "UP",
            "mode": b.mode,
            "rtime": str(b.rtime),
            "ttime": str(b.ttime),
        }
        if b.mode == "http":
            fields |= {f"hrsp_{cls}": str(b.hrsp.get(cls, 0)) for cls in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")}
        lines.append(_row(fields))
    return "\n".join(lines) + "\n"


def _row(fields: Mapping[str, str]) -> str:
    return ",".join(fields.get(c, "") for c in COLUMNS) + ","
