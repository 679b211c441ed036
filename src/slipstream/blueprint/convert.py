"""Read a located YAML tree into the pydantic models by looking at the models' own fields.

The model is the schema: a field's alias is the YAML key, its annotation says what the value
must be (string, whole number, true/false, one of a few words, list, mapping, nested model) and
its ``ge``/``le`` metadata bound numbers. Scalars are read as Render's Go parser reads them: a
string field takes any scalar as written (``value: 8080``, ``generation: off``). An unknown key
is an error when it is a known mistake or a likely typo (with a did-you-mean hint), a known key
in other letter case is read as that key, and any other key is ignored with a warning (Render
adds keys over time). Deprecated keys (``Model.DEPRECATED``) are mapped with a warning. A subtree
with an error yields ``INVALID`` and reading goes on, so one pass reports every structural problem
of the file.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from slipstream.blueprint import model as m
from slipstream.blueprint.problems import Collector, Path
from slipstream.blueprint.yamltree import BOOL, FLOAT, INT, SCALAR_TAGS, YMap, YNode, YScalar, YSeq, kind_of


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()

_INT_TEXT = re.compile(r"[-+]?[0-9]{1,15}")
_WHOLE_FLOAT = re.compile(r"[-+]?[0-9]{1,15}\.0*")
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}

# Keys people write that Render does not have, with what to do instead.
KNOWN_MISTAKES = {
    "healthCheckInterval": "Render blueprints have no health-check timing fields; keep only healthCheckPath",
    "healthCheckTimeout": "Render blueprints have no health-check timing fields; keep only healthCheckPath",
    "port": "Render tells the app its port in $PORT; bind to it instead of declaring one",
    "env_vars": "the key is 'envVars'",
    "environment": "env vars go under 'envVars' as a list of {key, value} entries",
    "scope": "Render env vars have no scope; every variable is available at build and run time",
    "command": "use 'startCommand' (and 'buildCommand' for the build)",
    "cmd": "use 'startCommand'",
    "dockerfile": "the key is 'dockerfilePath'",
    "instances": "the key is 'numInstances'",
}


def field_aliases(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """Map each YAML key of ``model`` to (attribute name, field info), leaving out internal fields."""
    out = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("internal"):
            continue
        out[info.alias or name] = (name, info)
    return out


def suggest(word: str, candidates: list[str]) -> str | None:
    """Return the candidate closest to ``word`` (case-insensitive), if any is close."""
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def read_model(node: YNode | None, model: type[m.Model], path: Path, out: Collector) -> Any:
    """Read a mapping node into ``model``; INVALID (with problems recorded) when it cannot."""
    if not isinstance(node, YMap):
        out.error(
            path,
            f"must be a mapping of keys, not {kind_of(node)}",
            f"see docs/blueprint-reference.yaml for the keys of {_noun(model)}",
        )
        return INVALID
    aliases = field_aliases(model)
    values: dict[str, Any] = {}
    ok = True
    for key, _mark, value in node.entries:
        here = path + (key,)
        if key not in aliases and key not in model.DEPRECATED:
            spelled = _same_key_spelled_otherwise(key, list(aliases), node)
            if spelled is None:  # reported, but the rest of the mapping is still read and checked
                _unknown_key(key, list(aliases) + list(model.DEPRECATED), model, here, out)
                continue
            out.warn(
                here,
                f"'{key}' is read as '{spelled}'",
                f"Render spells it '{spelled}'; write it that way",
                key=True,
            )
            _copy_marks(out, here, path + (spelled,))
            key, here = spelled, path + (spelled,)
        if key in aliases:
            name, info = aliases[key]
            got = read_value(value, info.annotation, here, out, info)
            if got is INVALID:
                ok = False
            else:
                values[name] = got
    for old in model.DEPRECATED:
        if old in node:
            ok = _DEPRECATION_HANDLERS[(model.__name__, old)](node, values, path, out) and ok
    for key, (name, info) in aliases.items():
        if info.is_required() and name not in values and key not in node:
            ok = False
            out.error(path, f"missing required key '{key}'", _required_hint(model, key))
    if not ok:
        return INVALID
    try:
        return model.model_validate(values)
    except ValidationError as exc:  # the reader above should make this unreachable
        for err in exc.errors():
            out.error(path + tuple(str(x) for x in err["loc"]), err["msg"])
        return INVALID


def _noun(model: type[BaseModel]) -> str:
    return {
        "Service": "a service",
        "Database": "a database",
        "EnvVarGroup": "an env var group",
        "EnvVar": "an envVars entry",
        "Document": "the file",
    }.get(model.__name__, model.__name__)


def _required_hint(model: type[BaseModel], key: str) -> str | None:
    if model is m.Service and key == "type":
        return "one of: web, pserv, worker, cron, keyvalue"
    if key == "name":
        return "every resource needs a unique name"
    return None


def _unknown_key(key: str, candidates: list[str], model: type[BaseModel], here: Path, out: Collector) -> None:
    """A known mistake or a likely typo is an error; any other key is ignored with a warning,
    because Render adds keys over time and slipstream must never be stricter than Render."""
    if key in KNOWN_MISTAKES:
        out.error(here, f"unknown key '{key[:60]}'", KNOWN_MISTAKES[key], key=True)
        return
    typo = likely_typo(key, candidates)
    if typo is not None:
        out.error(here, f"unknown key '{key[:60]}'", f"did you mean '{typo}'?", key=True)
        return
    out.warn(
        here,
        f"key '{key[:60]}' is not understood by slipstream and is ignored",
        f"if Render documents it, slipstream does not support it yet; the keys of {_noun(model)} "
        "slipstream reads are in docs/blueprint-reference.yaml",
        key=True,
    )


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def likely_typo(word: str, candidates: list[str]) -> str | None:
    """The candidate ``word`` is most likely a misspelling of: one or two edits away (one for
    words of four letters or fewer), ignoring case. None when no candidate is that close."""
    limit = 1 if len(word) <= 4 else 2
    best: tuple[int, str] | None = None
    for c in candidates:
        d = edit_distance(word.lower(), c.lower())
        if d <= limit and (best is None or d < best[0]):
            best = (d, c)
    return best[1] if best else None


def _same_key_spelled_otherwise(key: str, known: list[str], node: YMap) -> str | None:
    """The known key ``key`` equals but for letter case, unless that key is written too."""
    for k in known:
        if k.lower() == key.lower() and k not in node:
            return k
    return None


def _copy_marks(out: Collector, written: Path, canonical: Path) -> None:
    """Make the places (and labels) recorded under ``written`` known under ``canonical`` too."""
    n = len(written)
    for marks in (out.key_marks, out.value_marks):
        for p in [p for p in marks if p[:n] == written]:
            marks.setdefault(canonical + p[n:], marks[p])
    for p in [p for p in out.labels if p[:n] == written]:
        out.labels.setdefault(canonical + p[n:], out.labels[p])


def read_value(node: YNode | None, ann: Any, path: Path, out: Collector, info: FieldInfo | None = None) -> Any:
    """Read ``node`` as a value of type ``ann``; INVALID (with a problem recorded) when it is not."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if isinstance(node, YScalar) and node.is_null:
            return None
        return read_value(node, args[0] if len(args) == 1 else typing.Union[tuple(args)], path, out, info)  # noqa: UP007 (built at run time)
    if origin is Literal:
        return _read_choice(node, typing.get_args(ann), path, out)
    if origin is list:
        if isinstance(node, YScalar) and node.is_null:
            return []
        if not isinstance(node, YSeq):
            out.error(path, f"must be a list, not {kind_of(node)}", "start each item with '- '")
            return INVALID
        (item_type,) = typing.get_args(ann)
        items = [read_value(item, item_type, path + (i,), out) for i, item in enumerate(node.items)]
        # Keep the good items so later checks still run; the bad ones are already reported, and
        # their names/keys are remembered so no check complains that they are missing.
        for i, x in enumerate(items):
            if x is INVALID:
                out.broken_names.add(out.labels.get(path + (i,), ""))
        out.kept_indices[path] = [i for i, x in enumerate(items) if x is not INVALID]
        return [x for x in items if x is not INVALID]
    if origin is dict:
        if isinstance(node, YScalar) and node.is_null:
            return {}
        if not isinstance(node, YMap):
            out.error(path, f"must be a mapping, not {kind_of(node)}")
            return INVALID
        _, value_type = typing.get_args(ann)
        result = {k: read_value(v, value_type, path + (k,), out) for k, _, v in node.entries}
        return INVALID if any(x is INVALID for x in result.values()) else result
    if isinstance(ann, type) and issubclass(ann, m.Model):
        return read_model(node, ann, path, out)
    if ann is str:
        return _read_str(node, path, out)
    if ann is bool:
        return _read_bool(node, path, out)
    if ann is int:
        return _read_int(node, path, out, info)
    raise TypeError(f"convert cannot read {ann!r}")  # a model field of a kind this reader lacks


def _scalar(node: YNode | None, path: Path, out: Collector, what: str) -> YScalar | None:
    if not isinstance(node, YScalar):
        out.error(path, f"must be {what}, not {kind_of(node)}")
        return None
    if node.tag not in SCALAR_TAGS:
        out.error(path, f"unsupported YAML tag '{node.tag}'", "remove the tag; plain values are enough")
        return None
    return node


def _read_str(node: YNode | None, path: Path, out: Collector) -> Any:
    scalar = _scalar(node, path, out, "a string")
    if scalar is None:
        return INVALID
    if scalar.is_null:
        out.error(path, "must not be empty", "give a value or remove the key")
        return INVALID
    return scalar.text


def _read_bool(node: YNode | None, path: Path, out: Collector) -> Any:
    scalar = _scalar(node, path, out, "true or false")
    if scalar is None:
        return INVALID
    if scalar.tag == BOOL:
        return scalar.text.lower() in _TRUE
    if not scalar.quoted and scalar.text in ("y", "Y", "n", "N"):  # YAML 1.1 booleans, as Go reads them
        return scalar.text in ("y", "Y")
    hint = "remove the quotes" if scalar.text.lower() in _TRUE | _FALSE else None
    out.error(path, f"must be true or false, not '{scalar.text}'", hint)
    return INVALID


def _read_int(node: YNode | None, path: Path, out: Collector, info: FieldInfo | None) -> Any:
    scalar = _scalar(node, path, out, "a whole number")
    if scalar is None:
        return INVALID
    value = _whole_number(scalar)
    if value is None:
        hint = "remove the quotes" if scalar.quoted and _INT_TEXT.fullmatch(scalar.text) else None
        out.error(path, f"must be a whole number, not '{scalar.text[:40]}'", hint)
        return INVALID
    low, high = _bounds(info)
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f"between {low} and {high}" if high is not None else f"at least {low}"
        out.error(path, f"must be {rng}, not {value}")
        return INVALID
    return value


def _whole_number(scalar: YScalar) -> int | None:
    """The number a YAML int (or a float with nothing after the point, like ``10.0``) holds."""
    if scalar.tag == INT and _INT_TEXT.fullmatch(scalar.text):
        return int(scalar.text)
    if scalar.tag == FLOAT and _WHOLE_FLOAT.fullmatch(scalar.text):
        return int(float(scalar.text))
    return None


def _bounds(info: FieldInfo | None) -> tuple[int | None, int | None]:
    low = high = None
    for meta in info.metadata if info else []:
        if isinstance(meta, annotated_types.Ge):
            low = int(meta.ge)  # type: ignore[call-overload]  # annotated_types types bounds as a protocol
        elif isinstance(meta, annotated_types.Le):
            high = int(meta.le)  # type: ignore[call-overload]  # (same)
    return low, high


def _read_choice(node: YNode | None, choices: tuple[str, ...], path: Path, out: Collector) -> Any:
    scalar = _scalar(node, path, out, "one of: " + ", ".join(choices))
    if scalar is None:
        return INVALID
    text = scalar.text
    if text in choices:
        return text
    if "keyvalue" in choices and text in m.SERVICE_TYPE_ALIASES:
        new = m.SERVICE_TYPE_ALIASES[text]
        out.warn(path, f"type '{text}' is deprecated; it means '{new}'", f"write 'type: {new}'")
        return new
    guess = suggest(text, list(choices))
    hint = f"did you mean '{guess}'?" if guess else None
    field = str(path[-1]) if path and isinstance(path[-1], str) else "value"
    out.error(path, f"'{text[:60]}' is not a valid {field}; expected one of: {', '.join(choices)}", hint)
    return INVALID


# ---- deprecated keys: each handler maps the old key into ``values`` and says so -----------------


def _conflict(path: Path, old: str, new: str, out: Collector) -> bool:
    out.error(path + (old,), f"both '{old}' (deprecated) and '{new}' are set", f"remove '{old}'", key=True)
    return False


def _service_env(node: YMap, values: dict[str, Any], path: Path, out: Collector) -> bool:
    if "runtime" in node:
        return _conflict(path, "env", "runtime", out)
    got = read_value(node.get("env"), m.Service.model_fields["runtime"].annotation, path + ("env",), out)
    if got is INVALID:
        return False
    values["runtime"] = got
    out.warn(path + ("env",), "'env' is deprecated; Render renamed it 'runtime'", f"write 'runtime: {got}'", key=True)
    return True


def _service_auto_deploy(node: YMap, values: dict[str, Any], path: Path, out: Collector) -> bool:
    if "autoDeployTrigger" in node:
        return _conflict(path, "autoDeploy", "autoDeployTrigger", out)
    got = _read_bool(node.get("autoDeploy"), path + ("autoDeploy",), out)
    if got is INVALID:
        return False
    values["auto_deploy_trigger"] = "commit" if got else "off"
    out.warn(
        path + ("autoDeploy",),
        "'autoDeploy' is deprecated",
        f"write 'autoDeployTrigger: {values['auto_deploy_trigger']}'",
        key=True,
    )
    return True


def _service_pr_previews(node: YMap, values: dict[str, Any], path: Path, out: Collector) -> bool:
    if "previews" in node:
        return _conflict(path, "pullRequestPreviewsEnabled", "previews", out)
    got = _read_bool(node.get("pullRequestPreviewsEnabled"), path + ("pullRequestPreviewsEnabled",), out)
    if got is INVALID:
        return False
    generation: Literal["automatic", "off"] = "automatic" if got else "off"
    values["previews"] = m.ServicePreviews(generation=generation)
    out.warn(
        path + ("pullRequestPreviewsEnabled",),
        "'pullRequestPreviewsEnabled' is deprecated",
        f"write 'previews: {{generation: {generation}}}'",
        key=True,
    )
    return True


def _root_previews_enabled(node: YMap, values: dict[str, Any], path: Path, out: Collector) -> bool:
    if "previews" in node:
        return _conflict(path, "previewsEnabled", "previews", out)
    got = _read_bool(node.get("previewsEnabled"), path + ("previewsEnabled",), out)
    if got is INVALID:
        return False
    generation = "automatic" if got else "off"
    current = values.get("previews") or m.Previews()
    values["previews"] = current.model_copy(update={"generation": generation})
    out.warn(
        path + ("previewsEnabled",),
        "'previewsEnabled' is deprecated",
        f"write 'previews: {{generation: {generation}}}'",
        key=True,
    )
    return True


def _root_previews_expire(node: YMap, values: dict[str, Any], path: Path, out: Collector) -> bool:
    if "previews" in node:
        return _conflict(path, "previewsExpireAfterDays", "previews", out)
    info = m.Previews.model_fields["expire_after_days"]
    got = _read_int(node.get("previewsExpireAfterDays"), path + ("previewsExpireAfterDays",), out, info)
    if got is INVALID:
        return False
    current = values.get("previews") or m.Previews()
    values["previews"] = current.model_copy(update={"expire_after_days": got})
    out.warn(
        path + ("previewsExpireAfterDays",),
        "'previewsExpireAfterDays' is deprecated",
        f"write 'previews: {{expireAfterDays: {got}}}'",
        key=True,
    )
    return True


_DEPRECATION_HANDLERS: dict[tuple[str, str], Callable[[YMap, dict[str, Any], Path, Collector], bool]] = {
    ("Service", "env"): _service_env,
    ("Service", "autoDeploy"): _service_auto_deploy,
    ("Service", "pullRequestPreviewsEnabled"): _service_pr_previews,
    ("Document", "previewsEnabled"): _root_previews_enabled,
    ("Document", "previewsExpireAfterDays"): _root_previews_expire,
}
