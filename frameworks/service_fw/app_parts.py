"""The nested parts of a Marathon app definition: read with every problem by path, and rendered (pure).

Helpers of ``app_reading.py`` (which holds the public API and the rules for the document as a
whole): small typed readers, health checks, constraints, and the upgrade and unreachable
strategies (ports, container and network are in ``app_ports.py``). Each ``read_*`` adds a
(JSON pointer, reason) pair to ``errors`` for every problem and returns what it could read; each
``*_json`` renders a part back in Marathon's shape, so that reading a rendering gives the same
part again.

Unknown keys inside these objects are ignored (as at the top level: Marathon clients send fields
of newer or older Marathon versions); known keys of the wrong type or out of range are errors.
"""

from __future__ import annotations

import re
from typing import Any

from mensa.frameworks.reading import Problems, is_text, read_number, read_string
from mensa.frameworks.service_fw.apps import (
    OPERATORS,
    UNREACHABLE_NEVER,
    Constraint,
    HealthCheckSpec,
    UnreachableStrategy,
    UpgradeStrategy,
)

MAX_SECONDS = 1e9  # times in seconds: now + this stays a plain, representable float
MAX_FAILURES = 1_000_000
CHECK_PROTOCOLS = {"HTTP": "HTTP", "HTTPS": "HTTPS", "TCP": "TCP", "COMMAND": "COMMAND",
                   "MESOS_HTTP": "HTTP", "MESOS_HTTPS": "HTTPS", "MESOS_TCP": "TCP"}


def num(value: float) -> int | float:
    """A number as JSON shows it: whole numbers as integers (``300``, not ``300.0``), as
    Marathon does and as clients that read seconds into integers (go-marathon) need."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


# -- small readers ---------------------------------------------------------------------------------


def read_int(doc: dict[str, Any], key: str, path: str, errors: Problems, default: int, *,
             minimum: int, maximum: int) -> int:
    """Reads an integer (``3.0`` counts) from ``minimum`` to ``maximum``; ``default`` when
    absent, null or wrong."""
    value = doc.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not value.is_integer()):
        errors.add(f"{path}/{key}", "must be an integer")
        return default
    if not minimum <= value <= maximum:
        errors.add(f"{path}/{key}", f"must be between {minimum} and {maximum}")
        return default
    return int(value)


def read_seconds(doc: dict[str, Any], key: str, path: str, errors: Problems, default: float, *,
                 minimum: int = 0, maximum: float = MAX_SECONDS) -> float:
    """Reads a time in whole seconds (``30``; ``30.0`` counts) from ``minimum`` to ``maximum``;
    ``default`` when absent, null or wrong. Marathon's schema has these times as integers, and
    clients read them into integers (go-marathon's health checks), so ``0.5`` is refused."""
    value = doc.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.add(f"{path}/{key}", "must be a whole number of seconds")
        return default
    if isinstance(value, float) and not value.is_integer():
        errors.add(f"{path}/{key}", f"must be a whole number of seconds, not {value!r} (Marathon's schema "
                   "has it as an integer, and clients read it as one)")
        return default
    if not minimum <= value <= maximum:
        errors.add(f"{path}/{key}", f"must be from {minimum} to {num(maximum)} seconds")
        return default
    return float(value)


def read_float(doc: dict[str, Any], key: str, path: str, errors: Problems, default: float, *,
               minimum: float, strict: bool = False, maximum: float = MAX_SECONDS) -> float:
    """``read_number`` that never returns None (``default`` when absent, null or wrong)."""
    raw = doc.get(key)
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > 2**63:
        # JSON integers are unbounded; read_number's float conversion would overflow.
        errors.add(f"{path}/{key}", "must be a number of sensible size")
        return default
    value = read_number(doc, key, path, errors, default, minimum=minimum, strict=strict, maximum=maximum)
    return default if value is None else value


def read_bool(doc: dict[str, Any], key: str, path: str, errors: Problems, default: bool = False) -> bool:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.add(f"{path}/{key}", "must be true or false")
        return default
    return value


def read_list(doc: dict[str, Any], key: str, path: str, errors: Problems) -> list[Any]:
    """The list at ``key`` ([] when absent or null; an error and [] when not a list)."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(f"{path}/{key}", "must be a list")
        return []
    return value


def port_number(value: Any, path: str, errors: Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not value.is_integer()) or not 0 <= value <= 65535:
        errors.add(path, "must be a port number from 0 to 65535")
        return None
    return int(value)


def read_dict(value: Any, path: str, errors: Problems) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.add(path, "must be a JSON object")
        return None
    return value


# -- health checks ---------------------------------------------------------------------------------


def read_health_checks(doc: dict[str, Any], errors: Problems,
                       port_count: int | None) -> tuple[HealthCheckSpec, ...]:
    """``healthChecks``; ``port_count`` (None: unknown, the ports had problems) bounds portIndex."""
    out: list[HealthCheckSpec] = []
    for i, item in enumerate(read_list(doc, "healthChecks", "", errors)):
        check = _health_check(item, f"/healthChecks/{i}", errors, port_count)
        if check is not None:
            out.append(check)
    return tuple(out)


def _health_check(item: Any, at: str, errors: Problems, port_count: int | None) -> HealthCheckSpec | None:
    obj = read_dict(item, at, errors)
    if obj is None:
        return None
    raw = obj.get("protocol")
    protocol = "HTTP" if raw is None else CHECK_PROTOCOLS.get(raw) if isinstance(raw, str) else None
    if protocol is None:
        errors.add(f"{at}/protocol", "must be one of " + ", ".join(CHECK_PROTOCOLS))
        protocol = "HTTP"
    path = read_string(obj, "path", at, errors)
    port_index = None if obj.get("portIndex") is None else read_int(
        obj, "portIndex", at, errors, 0, minimum=0, maximum=65535)
    port = None if obj.get("port") is None else port_number(obj["port"], f"{at}/port", errors)
    command: str | None = None
    if obj.get("command") is not None:
        cmd_obj = read_dict(obj["command"], f"{at}/command", errors)
        if cmd_obj is not None:
            command = read_string(cmd_obj, "value", f"{at}/command", errors, required=True)
    if port_index is not None and port is not None:
        errors.add(f"{at}/port", "give portIndex or port, not both")
    if protocol == "COMMAND":
        if command is None and obj.get("command") is None:
            errors.add(f"{at}/command", "is required for a COMMAND check ({\"value\": \"...\"})")
    else:
        if obj.get("command") is not None:
            errors.add(f"{at}/command", f"is only for COMMAND checks, not {protocol}")
        if port is None and port_index is None and obj.get("port") is None:
            port_index = 0
    if port_index is not None and port_count == 0:
        errors.add(f"{at}/portIndex", "the app has no ports: give the check a fixed port, or the app a port")
    elif port_index is not None and port_count is not None and port_index >= port_count:
        errors.add(f"{at}/portIndex", f"the app has no port {port_index} (it has {port_count} port"
                   f"{'' if port_count == 1 else 's'}); give a portIndex below that or a fixed port")
    return HealthCheckSpec(
        protocol=protocol, path="/" if path is None else path, port_index=port_index, port=port,
        command=command,
        grace_period_seconds=read_seconds(obj, "gracePeriodSeconds", at, errors, 300.0),
        interval_seconds=read_seconds(obj, "intervalSeconds", at, errors, 60.0, minimum=1),
        timeout_seconds=read_seconds(obj, "timeoutSeconds", at, errors, 20.0, minimum=1),
        max_consecutive_failures=read_int(obj, "maxConsecutiveFailures", at, errors, 3, minimum=0,
                                          maximum=MAX_FAILURES),
        delay_seconds=read_seconds(obj, "delaySeconds", at, errors, 15.0),
        ignore_http1xx=read_bool(obj, "ignoreHttp1xx", at, errors),
    )


def health_check_json(c: HealthCheckSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": c.protocol, "path": c.path}
    if c.port_index is not None:
        out["portIndex"] = c.port_index
    if c.port is not None:
        out["port"] = c.port
    if c.command is not None:
        out["command"] = {"value": c.command}
    out.update(gracePeriodSeconds=num(c.grace_period_seconds), intervalSeconds=num(c.interval_seconds),
               timeoutSeconds=num(c.timeout_seconds), maxConsecutiveFailures=c.max_consecutive_failures,
               delaySeconds=num(c.delay_seconds), ignoreHttp1xx=c.ignore_http1xx)
    return out


# -- constraints -----------------------------------------------------------------------------------


def read_constraints(doc: dict[str, Any], errors: Problems) -> tuple[Constraint, ...]:
    """``constraints``: ``[field, OPERATOR]`` or ``[field, OPERATOR, value]``.

    UNIQUE takes no value; CLUSTER an optional one (without it, every instance goes where the
    first went); GROUP_BY an optional positive count of groups; LIKE and UNLIKE a regular
    expression; MAX_PER a positive count; IS a value. An empty value counts as none."""
    out: list[Constraint] = []
    for i, item in enumerate(read_list(doc, "constraints", "", errors)):
        at = f"/constraints/{i}"
        if not isinstance(item, list) or not 2 <= len(item) <= 3 or not all(is_text(x) for x in item):
            errors.add(at, "must be [field, OPERATOR] or [field, OPERATOR, value], all strings (without NUL)")
            continue
        field, operator = item[0], item[1].upper()
        value = item[2] if len(item) == 3 and item[2] != "" else None
        reason = _constraint_problem(field, operator, value)
        if reason:
            errors.add(at, reason)
            continue
        if operator in ("GROUP_BY", "MAX_PER") and value is not None:
            value = str(int(value))
        out.append(Constraint(field, operator, value))
    return tuple(out)


def _constraint_problem(field: str, operator: str, value: str | None) -> str | None:
    if not field.strip():
        return "the field must name an agent attribute or hostname"
    if operator not in OPERATORS:
        return f"operator {operator!r} is not one of {', '.join(OPERATORS)}"
    if operator == "UNIQUE" and value is not None:
        return "UNIQUE takes no value"
    if operator in ("LIKE", "UNLIKE", "IS", "MAX_PER") and value is None:
        return f"{operator} needs a value"
    if operator in ("LIKE", "UNLIKE") and value is not None:
        try:
            re.compile(value)
        except (re.error, OverflowError, RecursionError) as exc:
            return f"{value!r} is not a valid regular expression: {exc}"
    if operator in ("GROUP_BY", "MAX_PER") and value is not None and not _positive_count(value):
        return f"{operator} needs a positive integer, not {value!r}"
    return None


def _positive_count(text: str) -> bool:
    digits = text.strip()
    return digits.isascii() and digits.isdigit() and len(digits) <= 9 and int(digits) >= 1


# -- strategies ------------------------------------------------------------------------------------


def read_upgrade_strategy(doc: dict[str, Any], errors: Problems) -> UpgradeStrategy:
    """``upgradeStrategy``: both capacities from 0 to 1 (default 1 and 1); minimumHealthCapacity
    1 with maximumOverCapacity 0 is refused, as a rolling restart could then never begin."""
    value = doc.get("upgradeStrategy")
    if value is None:
        return UpgradeStrategy()
    obj = read_dict(value, "/upgradeStrategy", errors)
    if obj is None:
        return UpgradeStrategy()
    at = "/upgradeStrategy"
    low = read_float(obj, "minimumHealthCapacity", at, errors, 1.0, minimum=0, maximum=1)
    high = read_float(obj, "maximumOverCapacity", at, errors, 1.0, minimum=0, maximum=1)
    if low == 1 and high == 0:
        errors.add(at, "minimumHealthCapacity 1 with maximumOverCapacity 0 leaves a rolling restart no "
                   "room: it may neither stop an old instance nor start a new one first; lower the one "
                   "or raise the other")
    return UpgradeStrategy(low, high)


def read_unreachable_strategy(doc: dict[str, Any], errors: Problems) -> UnreachableStrategy:
    """``unreachableStrategy``: ``{inactiveAfterSeconds, expungeAfterSeconds}`` (default 300 and
    600, inactive at most expunge) or ``"disabled"`` (never replaced: both ``UNREACHABLE_NEVER``)."""
    value = doc.get("unreachableStrategy")
    at = "/unreachableStrategy"
    if value is None:
        return UnreachableStrategy()
    if value == "disabled":
        return UnreachableStrategy(UNREACHABLE_NEVER, UNREACHABLE_NEVER)
    if not isinstance(value, dict):
        errors.add(at, "must be {\"inactiveAfterSeconds\", \"expungeAfterSeconds\"} or \"disabled\"")
        return UnreachableStrategy()
    inactive = read_seconds(value, "inactiveAfterSeconds", at, errors, 300.0)
    expunge = read_seconds(value, "expungeAfterSeconds", at, errors, 600.0)
    if inactive > expunge:
        errors.add(f"{at}/expungeAfterSeconds", f"must be at least inactiveAfterSeconds ({num(inactive)}): "
                   "an instance is replaced before it is forgotten")
    return UnreachableStrategy(inactive, expunge)


def unreachable_json(s: UnreachableStrategy) -> dict[str, Any] | str:
    if s.disabled:
        return "disabled"
    return {"inactiveAfterSeconds": num(s.inactive_after_seconds),
            "expungeAfterSeconds": num(s.expunge_after_seconds)}
