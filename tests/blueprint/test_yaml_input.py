"""Hostile and unusual YAML input: every case ends in a Blueprint or a BlueprintError."""

from __future__ import annotations

import pytest
from bp_helpers import errors_of

from slipstream.blueprint import parse_blueprint

WEB = "  - type: web\n    name: api\n    runtime: python\n    startCommand: gunicorn app:app\n"


def test_billion_laughs_stops_at_the_node_budget() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=False):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    exc = errors_of("\n".join(lines) + "\n")
    assert "expands to more than 100000 values through aliases" in str(exc)


def test_alias_cycle_is_refused() -> None:
    exc = errors_of("services: &s [*s]\n")
    assert "alias cycle" in str(exc)


def test_deep_nesting_is_refused_before_the_python_stack() -> None:
    exc = errors_of("services: " + "[" * 5000 + "]" * 5000 + "\n")
    # our composer's limit, or PyYAML's own (6.0.4+ stops the scanner first); either way a clean error
    assert "nesting" in str(exc) and str(exc).startswith("render.yaml:1:")
    exc = errors_of("services:\n" + "".join("  " * i + "- \n" for i in range(1, 200)))
    assert exc.problems


def test_aliases_and_merge_keys_work() -> None:
    text = (
        "services:\n  - &base\n    type: worker\n    name: a\n    runtime: python\n    startCommand: x\n"
        "    envVars: &vars [{key: A, value: '1'}]\n"
        "  - <<: *base\n    name: b\n    envVars: *vars\n"
    )
    bp = parse_blueprint(text)
    assert [s.name for s in bp.services] == ["a", "b"]
    assert bp.service("b").start_command == "x"
    assert bp.service("b").env_vars[0].value == "1"


def test_merge_of_a_scalar_is_an_error() -> None:
    exc = errors_of("services:\n  - <<: 3\n    type: web\n")
    assert "'<<' must merge a mapping" in str(exc)


def test_non_utf8_bytes_point_at_the_byte() -> None:
    exc = errors_of(b"services:\n  - name: caf\xe9\n")
    (p,) = exc.problems
    assert (p.line, p.column) == (2, 14)
    assert "not valid UTF-8" in p.message


def test_bom_is_accepted_and_utf16_is_not() -> None:
    bp = parse_blueprint(("\ufeffservices:\n" + WEB).encode("utf-8"))
    assert bp.services[0].name == "api"
    assert errors_of(("services:\n" + WEB).encode("utf-16")).problems


def test_control_characters_and_surrogates() -> None:
    assert "U+0001 is not allowed" in str(errors_of("services:\n  - name: a\x01b\n"))
    assert "surrogate" in str(errors_of("services:\n  - name: a\ud800\n"))


def test_oversized_file() -> None:
    assert "larger than 1024 KiB" in str(errors_of(b"#" * (1024 * 1024 + 1)))
    assert "larger than 1024 KiB" in str(errors_of("#" * (1024 * 1024 + 1)))


def test_complex_keys_and_unknown_tags() -> None:
    assert "keys must be plain strings" in str(errors_of("? [a, b]\n: c\nservices: []\n"))
    assert "unsupported YAML tag '!secret'" in str(errors_of("services:\n  - type: !secret web\n"))
    assert "unsupported YAML tag" in str(errors_of("services: !!set {a, b}\n"))


@pytest.mark.parametrize("text", ["~", "null", "42", "'text'", "[]", "{}", "---\n...\n", "# only a comment\n"])
def test_non_mapping_documents(text: str) -> None:
    assert errors_of(text).problems


def test_values_are_taken_as_written() -> None:
    text = (
        "services:\n" + WEB + "    envVars:\n      - {key: A, value: 1.10}\n      - {key: B, value: yes}\n"
        "      - {key: C, value: 0x1F}\n      - {key: D, value: 12:30}\n      - {key: E, value: ''}\n"
    )
    env = {e.key: e.value for e in parse_blueprint(text).services[0].env_vars}
    assert env == {"A": "1.10", "B": "yes", "C": "0x1F", "D": "12:30", "E": ""}


def test_empty_value_sets_nothing() -> None:
    # As in Render's Go parser, an empty value sets nothing: accepted, with a warning.
    bp = parse_blueprint("services:\n" + WEB + "    envVars:\n      - key: A\n        value:\n")
    assert any("has no value source" in w.message for w in bp.warnings)


@pytest.mark.parametrize(
    "text",
    [
        "services:\n" + WEB,
        "services: " + "[" * 500 + "]" * 500 + "\n",
        "a: &x [*x]\n",
        "services:\n\t- x\n",
        "services: 'open\n",
        "services:\n  - name: a\x01\n",
        "éé: [1,\n",
    ],
)
def test_pure_python_loader_behaves_the_same(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from slipstream.blueprint import BlueprintError, yamltree

    def outcome() -> list[tuple[int, int, str]] | list[str]:
        try:
            return [s.name for s in parse_blueprint(text).services]
        except BlueprintError as exc:
            return [(p.line, p.column, p.message.split(":")[0]) for p in exc.problems]

    fast = outcome()
    monkeypatch.setattr(yamltree, "_Loader", yamltree._PyLoader)
    assert outcome() == fast
