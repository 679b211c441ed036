"""The deploys of one apply share one parse of their blueprint text (engine/prepare.py)."""

from __future__ import annotations

import pytest

from slipstream.blueprint import BlueprintError
from slipstream.engine import prepare

TEXT = "services:\n  - type: web\n    name: {name}\n    runtime: python\n    startCommand: python app.py\n"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = prepare.parse_blueprint

    def counting(text: str, filename: str = "render.yaml") -> object:
        seen.append(text)
        return real(text, filename=filename)

    monkeypatch.setattr(prepare, "parse_blueprint", counting)
    return seen


def test_one_text_is_parsed_once(parses: list[str]) -> None:
    cache = prepare._ParsedBlueprints()
    text = TEXT.format(name="api")
    first = cache.parse(text, "render.yaml")
    assert all(cache.parse(text, "render.yaml") is first for _ in range(5))
    assert parses == [text]
    assert first.service("api").name == "api"


def test_a_changed_text_or_file_is_parsed_again_and_the_oldest_goes(parses: list[str]) -> None:
    cache = prepare._ParsedBlueprints(keep=2)
    a, b, c = (TEXT.format(name=n) for n in ("a", "b", "c"))
    cache.parse(a, "render.yaml")
    cache.parse(a, "other.yaml")
    cache.parse(b, "render.yaml")  # three pairs, two kept: (a, render.yaml) went
    cache.parse(b, "render.yaml")
    cache.parse(a, "render.yaml")
    assert parses == [a, a, b, a]
    assert cache.parse(c, "render.yaml").service("c").name == "c"


def test_an_invalid_text_raises_every_time(parses: list[str]) -> None:
    cache = prepare._ParsedBlueprints()
    for _ in range(2):
        with pytest.raises(BlueprintError):
            cache.parse("services: [", "render.yaml")
    assert len(parses) == 2
