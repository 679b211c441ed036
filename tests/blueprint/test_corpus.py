"""Real public render.yaml files: each one that Render accepts validates; each failure is true."""

from __future__ import annotations

import csv

import pytest
from bp_helpers import CORPUS

from slipstream.blueprint import BlueprintError, load_blueprint

# The files that must fail, and the problems that make them invalid (true of the file).
EXPECTED_INVALID = {
    # No runtime (or env) at all: Render's spec makes runtime required unless the type is
    # keyvalue/redis, so Render refuses it too. And 'scope', a key Render does not have.
    "Bhaskar-Naik__mern-pizza-store.render.yaml": [
        "services[0] (pizza-store-backend): missing required key 'runtime'",
        "services[0] (pizza-store-backend).envVars[1] (PORT).scope: unknown key 'scope'",
    ],
}

FILES = sorted(CORPUS.glob("*.render.yaml")) if CORPUS.is_dir() else []
pytestmark = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")


def test_sources_list_every_file() -> None:
    with (CORPUS / "SOURCES.tsv").open() as f:
        listed = {row["file"] for row in csv.DictReader(f, delimiter="\t")}
    assert listed == {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file(path) -> None:  # type: ignore[no-untyped-def]
    expected = EXPECTED_INVALID.get(path.name)
    if expected is None:
        bp = load_blueprint(path)
        assert bp.services or bp.databases
        return
    with pytest.raises(BlueprintError) as info:
        load_blueprint(path)
    got = [f"{p.path}: {p.message}" for p in info.value.problems]
    assert got == expected


def test_corpus_counts(capsys) -> None:  # type: ignore[no-untyped-def]
    valid = invalid = warnings = 0
    for path in FILES:
        try:
            warnings += len(load_blueprint(path).warnings)
            valid += 1
        except BlueprintError:
            invalid += 1
    share = valid / len(FILES)
    with capsys.disabled():
        print(
            f"\ncorpus: {len(FILES)} files, {valid} valid ({share:.0%}), {invalid} invalid "
            f"(all expected), {warnings} warnings"
        )
    assert invalid == len(EXPECTED_INVALID)
    assert valid == len(FILES) - len(EXPECTED_INVALID)


def test_corpus_features_are_understood() -> None:
    bill = load_blueprint(CORPUS / "0limpo__bill-e.render.yaml")
    cron = bill.service("bill-e-sync")
    assert (cron.type, cron.runtime, cron.schedule) == ("cron", "python", "*/15 * * * *")
    assert any("'env' is deprecated" in w.message for w in bill.warnings)
    arrakis = load_blueprint(CORPUS / "seed002__arrakis.render.yaml")
    assert arrakis.service("arrakis-prod").auto_deploy_trigger == "off"
    assert arrakis.database("arrakis-prod-db").postgres_major_version == "17"
    docker = load_blueprint(CORPUS / "Bhargavitalatam__webhooks_Final.render.yaml")
    assert docker.services[0].runtime == "docker" and docker.services[0].unsupported_reason is None  # Podman runs it
    flags = load_blueprint(CORPUS / "Bhatter1986__Options-analysis.render.yaml")
    assert {e.key: e.value for e in flags.services[0].env_vars}["DEMO_MODE"] == "true"
    python = load_blueprint(CORPUS / "Bhargava-Ram-Thunga__Attendify-backend.render.yaml")
    assert {e.key: e.value for e in python.services[0].env_vars}["PYTHON_VERSION"] == "3.9.6"
