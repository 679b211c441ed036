"""Property-based fuzzing: whatever the input, parse_blueprint returns a Blueprint or raises
BlueprintError, and a valid result survives planning and env resolution.

Over 10,000 inputs in a normal run (each test asserts its own count): raw bytes, arbitrary text,
YAML token soup, random documents over the blueprint vocabulary, structured blueprints with
cross references, and mutated corpus files. Hypothesis draws every input of the small
generators; the big ones draw one seed per input and build the document with ``random.Random``
(drawing thousands of nested values through Hypothesis costs ~20 ms per input; a failure still
reports the seed, which reproduces it exactly).
"""

from __future__ import annotations

import random
import string

import yaml
from bp_helpers import CORPUS, REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slipstream.blueprint import Blueprint, BlueprintError, Problem, parse_blueprint
from slipstream.blueprint import model as m
from slipstream.blueprint.convert import field_aliases
from slipstream.blueprint.env import needed_generated, needed_synced, resolve_env
from slipstream.blueprint.plan import plan_blueprint, render_plan

FAST = dict(deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck))

VOCAB = sorted(
    {
        alias
        for model in (
            m.Document,
            m.Service,
            m.Database,
            m.EnvVarGroup,
            m.EnvVar,
            m.FromDatabase,
            m.FromService,
            m.Disk,
            m.StaticRoute,
            m.Header,
            m.ManifestEntry,
            m.Scaling,
            m.BuildFilter,
            m.ServicePreviews,
            m.Previews,
            m.Image,
            m.IpAllow,
            m.Environment,
            m.Project,
            m.Ungrouped,
        )
        for alias in field_aliases(model)
    }
    | {"env", "autoDeploy", "previewsEnabled", "<<"}
)
WORDS = [
    "web",
    "pserv",
    "worker",
    "cron",
    "keyvalue",
    "redis",
    "python",
    "node",
    "static",
    "docker",
    "image",
    "go",
    "api",
    "db",
    "jobs",
    "shared",
    "connectionString",
    "host",
    "port",
    "hostport",
    "password",
    "KEY",
    "PORT",
    "*/5 * * * *",
    "@daily",
    "/",
    "/healthz",
    "/var/data",
    "0.0.0.0/0",
    "true",
    "false",
    "commit",
    "off",
    "enum",
    "int",
    "url",
    "bool",
    "",
    " ",
    "~",
    "null",
    "1",
    "0",
    "-1",
    "300",
    "1e9",
    "ünïcödé",
    "a" * 70,
    "\\x00",
    "0x1F",
    "12:30",
    "2024-01-01",
    ".inf",
    "!!binary aGk=",
]
DOCS = sorted(CORPUS.glob("*.render.yaml")) if CORPUS.is_dir() else []
SEEDS = [p.read_text() for p in DOCS] + [(REPO / "docs" / "blueprint-reference.yaml").read_text()]


def check(data: str | bytes) -> bool:
    """The property: only BlueprintError, with problems; valid results survive downstream use."""
    try:
        bp = parse_blueprint(data)
    except BlueprintError as exc:
        assert exc.problems and all(isinstance(p, Problem) for p in exc.problems)
        assert str(exc).count("\n") == len(exc.problems) - 1
        return False
    assert isinstance(bp, Blueprint)
    render_plan(plan_blueprint(bp, {}))
    needed_generated(bp)
    needed_synced(bp)
    for service in bp.services:
        try:
            resolve_env(bp, service, databases={}, services={}, generated={}, synced={})
        except BlueprintError as exc:
            assert exc.problems
    return True


def run(strategy, examples: int) -> int:  # type: ignore[no-untyped-def]
    """Check ``examples`` inputs drawn from ``strategy``; return how many were valid blueprints."""
    seen, valid = [0], [0]

    def count(data):  # type: ignore[no-untyped-def]
        seen[0] += 1
        valid[0] += check(data)

    settings(max_examples=examples, **FAST)(given(strategy)(count))()  # type: ignore[arg-type]
    assert seen[0] >= examples, f"only {seen[0]} inputs"
    return valid[0]


def seeded(build) -> st.SearchStrategy[str]:  # type: ignore[no-untyped-def]
    """One drawn seed per input; ``build(random.Random(seed))`` makes the document."""
    return st.integers(0, 2**64 - 1).map(lambda seed: build(random.Random(seed)))


def test_fuzz_bytes() -> None:
    run(st.binary(max_size=300), 1500)


def test_fuzz_text_with_any_characters() -> None:
    run(st.text(st.characters(codec=None, exclude_categories=()), max_size=200), 1500)


TOKENS = [
    "services:",
    "databases:",
    "envVarGroups:",
    "projects:",
    "environments:",
    "envVars:",
    "\n",
    "\n  ",
    "\n    ",
    "\n      ",
    "  ",
    "- ",
    "-",
    ": ",
    ":",
    "? ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "<<: *a",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "'",
    '"',
    "\\",
    "#",
    "!!str ",
    "!!int ",
    "!!map ",
    "!tag ",
    "|",
    ">",
    "---",
    "...",
    "%YAML 1.1\n",
    "\t",
    "type: web",
    "name: api",
    "runtime: python",
    "startCommand: x",
    "key: A",
    "value: 1",
    "fromGroup: g",
    "fromDatabase:",
    "schedule: '* * * * *'",
    "~",
    "null",
    "é",
    "\ufeff",
    "\x85",
    "\u2028",
    "0o17",
    "1_000",
    "- type: cron",
]


def test_fuzz_yaml_token_soup() -> None:
    run(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join), 800)
    run(seeded(lambda r: "".join(r.choice(TOKENS) for _ in range(r.randint(0, 60)))), 2000)


scalars = st.one_of(
    st.sampled_from(WORDS), st.integers(-5, 400), st.booleans(), st.none(), st.text(string.printable, max_size=12)
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(VOCAB) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=12,
)


def random_value(r: random.Random, depth: int = 0) -> object:
    """A random YAML value whose keys come from the blueprint vocabulary."""
    roll = r.random()
    if depth > 5 or roll < 0.45:
        return r.choice(
            [
                r.choice(WORDS),
                r.randint(-5, 400),
                r.random() < 0.5,
                None,
                "".join(r.choice(string.printable) for _ in range(r.randint(0, 10))),
            ]
        )
    if roll < 0.65:
        return [random_value(r, depth + 1) for _ in range(r.randint(0, 4))]
    return {
        r.choice(VOCAB) if r.random() < 0.9 else r.choice(WORDS): random_value(r, depth + 1)
        for _ in range(r.randint(0, 7))
    }


def dump(doc: object, flow: bool = False) -> str:
    return yaml.dump(
        doc,
        Dumper=yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper,
        default_flow_style=flow,
        allow_unicode=True,
    )


def test_fuzz_documents_over_the_vocabulary() -> None:
    run(
        st.tuples(st.dictionaries(st.sampled_from(VOCAB), documents, max_size=4), st.booleans()).map(
            lambda t: dump(t[0], t[1])
        ),
        300,
    )
    run(
        seeded(lambda r: dump({r.choice(VOCAB): random_value(r) for _ in range(r.randint(0, 5))}, r.random() < 0.3)),
        2000,
    )


names = st.sampled_from(["api", "jobs", "db", "cache", "site", "shared", "Bad_Name", "x" * 64])
env_entry = st.one_of(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(["A", "B", "PORT", "1X", "SECRET_KEY"]),
            "value": st.sampled_from(["1", "x", "true", ""]),
        }
    ),
    st.fixed_dictionaries({"key": st.just("G"), "generateValue": st.booleans()}),
    st.fixed_dictionaries({"key": st.just("S"), "sync": st.booleans()}),
    st.fixed_dictionaries(
        {
            "key": st.just("D"),
            "fromDatabase": st.fixed_dictionaries(
                {"name": names, "property": st.sampled_from(["connectionString", "host", "url"])}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "key": st.just("F"),
            "fromService": st.fixed_dictionaries(
                {"type": st.sampled_from(["web", "pserv", "worker", "keyvalue", "redis"]), "name": names},
                optional={
                    "property": st.sampled_from(["host", "hostport", "connectionString"]),
                    "envVarKey": st.sampled_from(["A", "G", "S", "F"]),
                },
            ),
        }
    ),
    st.fixed_dictionaries({"fromGroup": names}),
)
service = st.fixed_dictionaries(
    {"type": st.sampled_from(["web", "pserv", "worker", "cron", "keyvalue"]), "name": names},
    optional={
        "runtime": st.sampled_from(["python", "node", "static", "docker", "go"]),
        "startCommand": st.just("run"),
        "schedule": st.sampled_from(["*/5 * * * *", "61 * * * *", "@daily"]),
        "staticPublishPath": st.just("dist"),
        "ipAllowList": st.just([]),
        "numInstances": st.integers(0, 3),
        "healthCheckPath": st.sampled_from(["/h", "h"]),
        "disk": st.fixed_dictionaries({"name": st.just("d"), "mountPath": st.sampled_from(["/d", "d"])}),
        "scaling": st.fixed_dictionaries(
            {"minInstances": st.integers(1, 3), "maxInstances": st.integers(1, 3)},
            optional={"targetCPUPercent": st.integers(1, 100)},
        ),
        "envVars": st.lists(env_entry, max_size=5),
        "envManifest": st.dictionaries(
            st.sampled_from(["A", "G", "S", "D", "Z"]),
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["int", "bool", "url", "enum", "string"]),
                    "default": st.sampled_from(["1", "x", "true"]),
                    "values": st.just(["1", "x"]),
                    "secret": st.booleans(),
                    "required": st.booleans(),
                },
            ),
            max_size=3,
        ),
    },
)
blueprints = st.fixed_dictionaries(
    {"services": st.lists(service, max_size=4)},
    optional={
        "databases": st.lists(st.fixed_dictionaries({"name": names}), max_size=2),
        "envVarGroups": st.lists(
            st.fixed_dictionaries({"name": names, "envVars": st.lists(env_entry, max_size=3)}), max_size=2
        ),
    },
)


NAMES = ["api", "jobs", "db", "cache", "site", "shared", "Bad_Name", "x" * 64]


def random_env(r: random.Random) -> dict[str, object]:
    """A random envVars entry using one (or sometimes two) of the six sources."""
    entry: dict[str, object] = {"key": r.choice(["A", "B", "G", "S", "D", "F", "PORT", "1X", "SECRET_KEY"])}
    for _ in range(1 if r.random() < 0.85 else 2):
        source = r.choice(["value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup"])
        if source == "value":
            entry["value"] = r.choice(["1", "x", "true", "", "http://h/x"])
        elif source in ("generateValue", "sync"):
            entry[source] = r.random() < 0.7 if source == "generateValue" else r.random() < 0.2
        elif source == "fromDatabase":
            entry["fromDatabase"] = {"name": r.choice(NAMES), "property": r.choice(["connectionString", "host", "url"])}
        elif source == "fromService":
            ref: dict[str, object] = {
                "type": r.choice(["web", "pserv", "worker", "keyvalue", "redis"]),
                "name": r.choice(NAMES),
            }
            if r.random() < 0.6:
                ref["property"] = r.choice(["host", "hostport", "connectionString"])
            if r.random() < 0.5:
                ref["envVarKey"] = r.choice(["A", "G", "S", "F"])
            entry["fromService"] = ref
        else:
            entry = {"fromGroup": r.choice(NAMES)}
    return entry


def random_service(r: random.Random) -> dict[str, object]:
    """A random service: mostly plausible, sometimes wrong in one or two ways."""
    s: dict[str, object] = {"type": r.choice(["web", "pserv", "worker", "cron", "keyvalue"]), "name": r.choice(NAMES)}
    options = {
        "runtime": lambda: r.choice(["python", "node", "static", "docker", "go"]),
        "startCommand": lambda: "run",
        "schedule": lambda: r.choice(["*/5 * * * *", "61 * * * *", "@daily", "* * *"]),
        "staticPublishPath": lambda: "dist",
        "ipAllowList": lambda: [],
        "numInstances": lambda: r.randint(0, 3),
        "healthCheckPath": lambda: r.choice(["/h", "h"]),
        "disk": lambda: {"name": "d", "mountPath": r.choice(["/d", "d"])},
        "scaling": lambda: {
            "minInstances": r.randint(1, 3),
            "maxInstances": r.randint(1, 3),
            **({"targetCPUPercent": 50} if r.random() < 0.7 else {}),
        },
        "envVars": lambda: [random_env(r) for _ in range(r.randint(0, 5))],
        "envManifest": lambda: {
            r.choice(["A", "G", "S", "D", "Z"]): {
                k: v()
                for k, v in {
                    "type": lambda: r.choice(["int", "bool", "url", "enum", "string"]),
                    "default": lambda: r.choice(["1", "x", "true"]),
                    "values": lambda: ["1", "x"],
                    "secret": lambda: r.random() < 0.5,
                    "required": lambda: r.random() < 0.5,
                }.items()
                if r.random() < 0.4
            }
            for _ in range(r.randint(0, 2))
        },
    }
    for key, make in options.items():
        if r.random() < (0.9 if key in ("runtime", "startCommand", "envVars") else 0.25):
            s[key] = make()
    return s


def random_blueprint(r: random.Random) -> str:
    doc: dict[str, object] = {"services": [random_service(r) for _ in range(r.randint(0, 4))]}
    if r.random() < 0.6:
        doc["databases"] = [{"name": r.choice(NAMES)} for _ in range(r.randint(0, 2))]
    if r.random() < 0.5:
        doc["envVarGroups"] = [
            {"name": r.choice(NAMES), "envVars": [random_env(r) for _ in range(r.randint(0, 3))]}
            for _ in range(r.randint(0, 2))
        ]
    if r.random() < 0.2:
        doc = {"projects": [{"name": "p", "environments": [dict(doc, name="prod"), {"name": "dev", **doc}]}]}
    return dump(doc)


def test_fuzz_structured_blueprints() -> None:
    valid = run(blueprints.map(dump), 400)
    valid += run(seeded(random_blueprint), 1800)
    assert valid > 0, "the generators never produced a valid blueprint; they test too little"


@st.composite
def mutated(draw):  # type: ignore[no-untyped-def]
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.splitlines(keepends=True) or [""]
        op = draw(st.sampled_from(["cut", "insert", "swap", "dup", "indent", "word"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "cut":
            a = draw(st.integers(0, len(text)))
            text = text[:a] + text[a + draw(st.integers(1, 40)) :]
        elif op == "insert":
            a = draw(st.integers(0, len(text)))
            text = text[:a] + draw(st.sampled_from(TOKENS + WORDS)) + text[a:]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        elif op == "dup":
            text = "".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "  ", "\t"])) + lines[i].lstrip(" ")
            text = "".join(lines)
        else:
            words = lines[i].split(": ", 1)
            if len(words) == 2:
                lines[i] = words[0] + ": " + draw(st.sampled_from(WORDS)) + "\n"
            text = "".join(lines)
    return text


def test_fuzz_mutated_corpus_files() -> None:
    run(mutated(), 1600)


def test_seeds_are_valid_before_mutation() -> None:
    assert len(SEEDS) >= 2
    ok = 0
    for text in SEEDS:
        try:
            parse_blueprint(text)
            ok += 1
        except BlueprintError:
            pass
    assert ok >= len(SEEDS) - 1
