"""Settings: every knob typed and checked, a bad value names its variable, the docs list them all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slipstream.settings import Settings, SettingsError, knobs, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_defaults_and_parsing() -> None:
    s = load_settings(
        {
            "SLIPSTREAM_HOME": "/tmp/x",
            "SLIPSTREAM_HTTP_PORT": "9090",
            "SLIPSTREAM_POSTGRES_LISTEN": "127.0.0.1, 10.0.0.5",
            "SLIPSTREAM_OVERLAP": "Wait",
            "SLIPSTREAM_SETTLE_SECONDS": "0.5",
        }
    )
    assert (s.home, s.http_port, s.postgres_listen, s.overlap, s.settle_s) == (
        Path("/tmp/x"),
        9090,
        ("127.0.0.1", "10.0.0.5"),
        "wait",
        0.5,
    )
    assert load_settings({"SLIPSTREAM_HOME": "/tmp/x"}) == Settings(home=Path("/tmp/x"))


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("SLIPSTREAM_HTTP_PORT", "eighty", "not a whole number"),
        ("SLIPSTREAM_HTTP_PORT", "70000", "not a TCP port"),
        ("SLIPSTREAM_SETTLE_SECONDS", "soon", "not a number"),
        ("SLIPSTREAM_SETTLE_SECONDS", "-1", "at least 0"),
        ("SLIPSTREAM_BACKUP_RETENTION", "0", "at least 1"),
        ("SLIPSTREAM_OVERLAP", "queue", "use one of override, wait"),
        ("SLIPSTREAM_MEMORY_CGROUPS", "maybe", "use one of auto, off"),
        ("SLIPSTREAM_POSTGRES_LISTEN", " , ", "give one or more addresses"),
        ("SLIPSTREAM_INSTANCE_PORTS", "20000", "not a range like 20000-29999"),
        ("SLIPSTREAM_INSTANCE_PORTS", "30000-20000", "the low end is above the high end"),
        ("SLIPSTREAM_API_LISTEN", "8443", "not host:port"),
        ("SLIPSTREAM_API_LISTEN", "build-host:8443", "not an IP address"),
        ("SLIPSTREAM_API_LISTEN", "0.0.0.0:99999", "not a TCP port"),
        ("SLIPSTREAM_API_URL", "http://build-host:8443", "not an https:// URL"),
    ],
)
def test_a_bad_value_names_the_variable(var: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings({"SLIPSTREAM_HOME": "/tmp/x", var: value})
    assert str(exc.value).startswith(f"{var} has value {value!r}") and says in str(exc.value)


def test_the_remote_api_settings() -> None:
    s = load_settings(
        {
            "SLIPSTREAM_HOME": "/tmp/x",
            "SLIPSTREAM_API_LISTEN": "[::]:8443",
            "SLIPSTREAM_API_URL": "https://build-host:8443/",
            "SLIPSTREAM_TOKEN": "slp_secret",
        }
    )
    assert (s.api_listen, s.api_url, s.token) == (("::", 8443), "https://build-host:8443", "slp_secret")
    assert "slp_secret" not in repr(s)
    with pytest.raises(SettingsError, match="set both or neither"):
        load_settings({"SLIPSTREAM_HOME": "/tmp/x", "SLIPSTREAM_API_CERT": "/etc/ssl/api.pem"})


def test_every_knob_is_documented_with_its_default() -> None:
    text = DOCS.read_text()
    for k in knobs():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{k.env}` |")), None)
        assert row is not None, f"{k.env} is missing from docs/operations.md"
        assert k.doc in row and (not k.default or k.env == "SLIPSTREAM_HOME" or f"`{k.default}`" in row), row
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `SLIPSTREAM_")}
    assert documented == {k.env for k in knobs()}


def test_the_state_directory_is_private_to_its_owner(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", service_users="off")
    s.home.mkdir()
    (s.home / "state.db").write_text("")  # as an older version left them: 0644 and 0755
    os.chmod(s.home / "state.db", 0o644)
    (s.home / "builds").mkdir(mode=0o755)
    (s.home / "postgres").mkdir(mode=0o711)  # its server's user must get through
    s.ensure_dirs()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in s.home.iterdir()}
    assert stat.S_IMODE(s.home.stat().st_mode) == 0o711
    assert modes.pop("postgres") == 0o711
    assert {n for n, m in modes.items() if m not in (0o600, 0o700)} == set()
    assert {"state.db", "logs.db", "metrics.db", "daemon.log", "builds", "disks", "run", "podman"} <= set(modes)


def test_with_service_users_their_areas_are_traversable_only(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", service_users="auto")
    s.ensure_dirs()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in s.home.iterdir()}
    opened = {"builds", "cache", "disks", "run"} if os.geteuid() == 0 else set()
    assert {n for n, m in modes.items() if m == 0o711} == opened  # each service's area below is 0710
    assert {n for n, m in modes.items() if m not in (0o600, 0o700, 0o711)} == set()
