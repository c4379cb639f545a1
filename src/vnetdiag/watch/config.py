"""The watch configuration file (TOML) -> WatchConfig, with errors that name the key.

    interval_s = 5
    namespaces = ["vnd-*", "host"]
    journal = "/var/lib/vnetdiag/watch.jsonl"

    [exporter]
    listen = "127.0.0.1:9469"
    devices_exclude = ["lo"]

    [detectors.tx_stall]
    raise_after = 2
    [[detectors.tx_stall.actions]]
    kind = "qdisc-reset"
    cooldown_s = 10
    max_attempts = 2
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from vnetdiag.analyze.detectors import BY_NAME
from vnetdiag.analyze.detectors.base import resolve_params
from vnetdiag.errors import BadInputError
from vnetdiag.model.watch import ActionSpec, DetectorConfig, ExporterConfig, WatchConfig

ACTION_KINDS = ("link-bounce", "offloads-off", "qdisc-reset", "exec")
_TOP = {"interval_s", "namespaces", "journal", "tracer", "exporter", "detectors"}
_EXPORTER = {"listen", "devices_include", "devices_exclude", "netstat_fields", "driver_stats"}
_ACTION = {"kind", "cooldown_s", "max_attempts", "command", "timeout_s", "features"}


class ConfigError(BadInputError):
    pass


def _fail(src: str, key: str, why: str) -> ConfigError:
    return ConfigError(f"{src}: {key}: {why}", hint="see docs/watch.md for the configuration format")


def _num(src, key, value, *, positive=True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(src, key, f"expected a number, got {value!r}")
    if positive and value <= 0:
        raise _fail(src, key, f"must be positive, got {value}")
    return float(value)


def _strs(src, key, value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(src, key, f"expected a list of strings, got {value!r}")
    return tuple(value)


def _unknown(src, prefix, data: dict, known: set[str]) -> None:
    for k in data:
        if k not in known:
            raise _fail(src, f"{prefix}{k}", f"unknown key (known: {', '.join(sorted(known))})")


def load(path: str | Path) -> WatchConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read config {p}: {exc.strerror}", hint="give an existing TOML file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}", hint="see docs/watch.md for the configuration format") from None
    return parse(data, str(p))


def parse(data: dict, src: str = "<config>") -> WatchConfig:
    _unknown(src, "", data, _TOP)
    kw: dict = {}
    if "interval_s" in data:
        kw["interval_s"] = _num(src, "interval_s", data["interval_s"])
    if "namespaces" in data:
        kw["namespaces"] = _strs(src, "namespaces", data["namespaces"])
    if "journal" in data:
        if not isinstance(data["journal"], str):
            raise _fail(src, "journal", f"expected a path string, got {data['journal']!r}")
        kw["journal"] = data["journal"]
    if "tracer" in data:
        if not isinstance(data["tracer"], bool):
            raise _fail(src, "tracer", f"expected true or false, got {data['tracer']!r}")
        kw["tracer"] = data["tracer"]
    exp = data.get("exporter", {})
    if not isinstance(exp, dict):
        raise _fail(src, "exporter", "expected a table")
    _unknown(src, "exporter.", exp, _EXPORTER)
    ekw: dict = {}
    if "listen" in exp:
        ekw["listen"] = parse_listen(exp["listen"], f"{src}: exporter.listen") and exp["listen"]
    for k in ("devices_include", "devices_exclude"):
        if k in exp:
            ekw[k] = _strs(src, f"exporter.{k}", exp[k])
    if "netstat_fields" in exp:
        try:
            re.compile(exp["netstat_fields"])
        except (re.error, TypeError) as exc:
            raise _fail(src, "exporter.netstat_fields", f"not a regular expression: {exc}") from None
        ekw["netstat_fields"] = exp["netstat_fields"]
    if "driver_stats" in exp:
        if not isinstance(exp["driver_stats"], bool):
            raise _fail(src, "exporter.driver_stats", f"expected true or false, got {exp['driver_stats']!r}")
        ekw["driver_stats"] = exp["driver_stats"]
    kw["exporter"] = ExporterConfig(**ekw)
    dets = data.get("detectors", {})
    if not isinstance(dets, dict):
        raise _fail(src, "detectors", "expected a table of detector tables")
    out = []
    for name, body in dets.items():
        if name not in BY_NAME:
            raise _fail(src, f"detectors.{name}", f"unknown detector (known: {', '.join(BY_NAME)})")
        if not isinstance(body, dict):
            raise _fail(src, f"detectors.{name}", "expected a table")
        body = dict(body)
        enabled = body.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise _fail(src, f"detectors.{name}.enabled", f"expected true or false, got {enabled!r}")
        actions = body.pop("actions", [])
        if not isinstance(actions, list):
            raise _fail(src, f"detectors.{name}.actions", "expected an array of tables ([[...actions]])")
        try:
            resolve_params(name, BY_NAME[name].PARAMS, body)
        except BadInputError as exc:
            raise ConfigError(f"{src}: {exc.message}", hint=exc.hint) from None
        specs = tuple(_action(src, f"detectors.{name}.actions[{i}]", a) for i, a in enumerate(actions))
        out.append(DetectorConfig(name=name, enabled=enabled, params=body, actions=specs))
    kw["detectors"] = tuple(out)
    return WatchConfig(**kw)


def _action(src: str, where: str, a) -> ActionSpec:
    if not isinstance(a, dict):
        raise _fail(src, where, "expected a table")
    _unknown(src, f"{where}.", a, _ACTION)
    kind = a.get("kind")
    if kind not in ACTION_KINDS:
        raise _fail(src, f"{where}.kind", f"must be one of {', '.join(ACTION_KINDS)}, got {kind!r}")
    kw: dict = {"kind": kind}
    for k in ("cooldown_s", "timeout_s"):
        if k in a:
            kw[k] = _num(src, f"{where}.{k}", a[k], positive=(k == "timeout_s"))
    if "max_attempts" in a:
        v = a["max_attempts"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _fail(src, f"{where}.max_attempts", f"expected an integer >= 1, got {v!r}")
        kw["max_attempts"] = v
    if "command" in a:
        kw["command"] = _strs(src, f"{where}.command", a["command"])
        if not kw["command"]:
            raise _fail(src, f"{where}.command", "must not be empty")
    elif kind == "exec":
        raise _fail(src, f"{where}.command", "exec needs a command (a list: [\"/path/to/prog\", \"arg\"])")
    if "features" in a:
        kw["features"] = _strs(src, f"{where}.features", a["features"])
    return ActionSpec(**kw)


def parse_listen(value, what: str = "--listen") -> tuple[str, int]:
    """"ADDR:PORT" (or ":PORT", "[v6]:PORT") -> (addr, port); loopback when ADDR is empty."""
    if not isinstance(value, str) or ":" not in value:
        raise BadInputError(f"{what}: expected ADDR:PORT, got {value!r}", hint="e.g. 127.0.0.1:9469")
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInputError(f"{what}: bad port {port!r}", hint="a number 1-65535, e.g. 127.0.0.1:9469")
    return host, int(port)
