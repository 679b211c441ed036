"""The HTTP API over an in-process engine: the flows the CLI drives, and one table of error answers."""

from __future__ import annotations

from typing import Any

import pytest

from slipstream.secrets import MASK

from .conftest import Api

TOKEN = "tok-api-5ecret-7781"


def blueprint(api: Api, text: str | None = None) -> dict[str, str]:
    """A deploy request for service 'web' of a fresh blueprint directory."""
    path = api.rig.write_blueprint(
        text or "services:\n  - {type: web, name: web, runtime: python, startCommand: serve}\n"
    )
    return {"service": "web", "blueprint": str(path), "from_dir": str(path.parent), "project": "shop"}


def ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_deploy_then_read_status_history_and_events(api: Api) -> None:
    queued = ok(api.post("/v1/deploys", json=blueprint(api)))["deploy"]
    assert (queued["id"], queued["service"], queued["kind"]) == (1, "web", "deploy")
    api.rig.finish(1)
    assert ok(api.get("/v1/deploys/1"))["deploy"]["status"] == "live"
    assert [d["status"] for d in ok(api.get("/v1/services/web/deploys"))["deploys"]] == ["live"]
    events = ok(api.get("/v1/deploys/1/events"))["events"]
    assert events[0]["message"] == "deploy 1 queued" and events[-1]["message"] == "-----> Deploy 1 is live"
    later = ok(api.get("/v1/deploys/1/events", params={"after": events[-2]["id"]}))["events"]
    assert [e["message"] for e in later] == ["-----> Deploy 1 is live"]
    (svc,) = ok(api.get("/v1/status"))["services"]
    assert (svc["name"], svc["project"], svc["type"], svc["url"], svc["live_deploy"]["id"]) == (
        "web",
        "shop",
        "web",
        "http://web.localhost:8080",
        1,
    )
    assert [(i["id"], i["state"], i["process"]) for i in svc["instances"]] == [("web-d1-1", "live", "running")]


def test_rollback_env_and_logs_never_show_a_value(api: Api) -> None:
    answers = [ok(api.post("/v1/deploys", json=blueprint(api)))]
    api.rig.finish(1)
    answers.append(ok(api.post("/v1/services/web/env", json={"set": {"API_TOKEN": TOKEN}})))
    assert answers[-1]["deploy"]["kind"] == "config"
    api.rig.finish(2)
    api.rig.app_prints("web-d2-1", f"using {TOKEN}")
    answers.append(ok(api.get("/v1/services/web/env")))
    assert answers[-1]["env"] == [{"key": "API_TOKEN", "value": MASK, "source": "env set"}]
    answers.append(ok(api.get("/v1/services/web/logs")))
    assert [(x["instance"], x["message"]) for x in answers[-1]["lines"]] == [("web-d2-1", f"using {MASK}")]
    answers.append(ok(api.post("/v1/services/web/rollback", json={"to": 1})))
    assert (answers[-1]["deploy"]["kind"], answers[-1]["deploy"]["rollback_of"]) == ("rollback", 1)
    api.rig.finish(3)
    for path in ("/v1/status", "/v1/services/web/events", "/v1/deploys/2/events", "/v1/services/web/deploys"):
        answers.append(ok(api.get(path)))
    assert not [a for a in answers if TOKEN in str(a)]


def test_cancel_answers_with_the_canceled_deploys(api: Api) -> None:
    api.rig.builder.seconds = 60
    ok(api.post("/v1/deploys", json=blueprint(api)))
    api.rig.wait_said(1, "-----> Building")
    canceled = ok(api.post("/v1/services/web/cancel"))["canceled"]
    assert [d["id"] for d in canceled] == [1]
    assert api.rig.finish(1).status == "canceled"
    assert ok(api.post("/v1/services/web/cancel")) == {"canceled": []}


def test_shutdown_is_handed_to_the_daemon(api: Api) -> None:
    assert ok(api.post("/v1/shutdown", json={"everything": False})) == {"ok": True}
    assert api.shutdowns == [False]


BAD_BLUEPRINT = "services:\n  - {type: web, name: web, runtime: python, startCommand: serve, helthCheckPath: /}\n"
ERRORS: dict[str, tuple[str, str, Any, int, str, str | None]] = {
    # name: (method, path, body, status, error starts with, hint)
    "unknown service": (
        "GET",
        "/v1/services/nope/deploys",
        None,
        404,
        "unknown service 'nope'",
        "run 'slipstream status' to list services",
    ),
    "unknown deploy": (
        "GET",
        "/v1/deploys/99",
        None,
        404,
        "unknown deploy 99",
        "run 'slipstream deploys SERVICE' to list deploys",
    ),
    "deploy an unknown service": (
        "POST",
        "/v1/deploys",
        {"service": "nope"},
        404,
        "unknown service 'nope'",
        "pass --blueprint FILE to deploy it from its render.yaml",
    ),
    "rollback to no deploy": (
        "POST",
        "/v1/services/web/rollback",
        {"to": 9},
        404,
        "deploy 9 is not a deploy of web",
        "run 'slipstream deploys web'",
    ),
    "another project's name": (
        "POST",
        "/v1/deploys",
        {"project": "other"},
        409,
        "service 'web' belongs to project 'shop'; project 'other' cannot use that name",
        "rename it in this blueprint, or delete it from 'shop' first",
    ),
    "a bad env key": (
        "POST",
        "/v1/services/web/env",
        {"set": {"BAD=KEY": "x"}},
        422,
        "not a valid env key: BAD=KEY",
        "keys have no '=', spaces or control characters",
    ),
    "a broken blueprint": ("POST", "/v1/deploys", {"text": BAD_BLUEPRINT}, 422, "", "run 'slipstream validate "),
    "a bad log cursor": (
        "GET",
        "/v1/services/web/logs?after=nope",
        None,
        422,
        "invalid request: query.after: Input should be a valid integer",
        "see the API's schema at /docs",
    ),
    "no database manager": (
        "GET",
        "/v1/databases",
        None,
        503,
        "managed PostgreSQL is not enabled in this daemon",
        None,
    ),
}


@pytest.mark.parametrize(("method", "path", "body", "status", "error", "hint"), ERRORS.values(), ids=ERRORS.keys())
def test_errors_answer_with_a_status_an_error_and_a_hint(
    api: Api, method: str, path: str, body: Any, status: int, error: str, hint: str | None
) -> None:
    ok(api.post("/v1/deploys", json=blueprint(api)))
    api.rig.finish(1)
    if body is not None and path == "/v1/deploys" and "service" not in body:  # a new blueprint directory
        body = {**blueprint(api, body.pop("text", None)), **body}
    resp = api.request(method, path, json=body)
    answer = resp.json()
    assert (resp.status_code, sorted(answer)) == (status, ["error", "hint"]), answer
    assert answer["error"].startswith(error)
    assert answer["hint"] == hint or (hint is not None and answer["hint"].startswith(hint))


def test_an_unexpected_error_is_a_500_without_its_details(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("boom: /srv/secret/path line 42")

    monkeypatch.setattr(api.rig.engine, "status", broken)
    resp = api.get("/v1/status")
    assert (resp.status_code, resp.json()) == (
        500,
        {"error": "internal error in the slipstream daemon", "hint": "see daemon.log"},
    )
    assert "boom" not in resp.text and "Traceback" not in resp.text


def test_a_malformed_request_answers_like_every_other_error(api: Api) -> None:
    resp = api.post("/v1/deploys", json={"blueprint": "render.yaml"})
    assert (resp.status_code, sorted(resp.json())) == (422, ["error", "hint"])
    assert "service" in resp.json()["error"]
