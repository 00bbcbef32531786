"""Reading the TOML config file: every problem found at once, each with its key path.

A problem reads ``key.path[index].field: reason``, for example
``campaigns[2].abandon_target: must be between 0 and 0.05``. Problems never quote a secret:
values under secret-looking keys are not echoed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from dialer.config.checks import cross_field_problems
from dialer.config.fields import FieldProblems
from dialer.config.models import Settings


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def check_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem of the config file at `path`; an empty list means it is usable."""
    return _load(Path(path), os.environ if environ is None else environ)[1]


def load_settings(
    path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings in the file at `path`, or the demo defaults for `None`.

    `${NAME}` inside any string value is replaced by the environment variable NAME (from
    `environ`, by default the process environment; ``$${`` stands for a literal ``${``).
    Raises `ConfigError` listing every problem.
    """
    if path is None:
        return Settings()
    settings, problems = _load(Path(path), os.environ if environ is None else environ)
    if settings is None:
        raise ConfigError(problems)
    return settings


def parse_settings(
    text: str, *, environ: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Settings:
    """The settings in TOML `text`, as `load_settings` reads a file; raises `ConfigError`.

    Relative file paths (``ami.tls_ca``) are resolved against `base_dir` and checked to exist
    only when it is given.
    """
    settings, problems = _parse(text, os.environ if environ is None else environ, base_dir)
    if settings is None:
        raise ConfigError(problems)
    return settings


def _load(path: Path, environ: Mapping[str, str]) -> tuple[Settings | None, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except UnicodeDecodeError:
        return None, [f"{path}: not UTF-8 text"]
    except OSError as exc:
        return None, [f"{path}: {exc.strerror or exc}"]
    return _parse(text, environ, path.parent)


def _parse(
    text: str, environ: Mapping[str, str], base_dir: Path | None
) -> tuple[Settings | None, list[str]]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"TOML syntax error: {exc}"]
    env_problems: list[tuple[str, str]] = []
    data = _substitute(raw, "", environ, env_problems)
    context = {"base_dir": base_dir, "cross_checked": True}
    problems = list(env_problems)
    settings = None
    try:
        settings = Settings.model_validate(data, context=context)
    except ValidationError as exc:
        reported = {path for path, _ in env_problems}
        for error in exc.errors():
            problems += [(p, r) for p, r in _explain(error) if p not in reported]
    defaults = Settings().model_dump(include={"ami", "campaigns", "operators"})
    problems += cross_field_problems({**defaults, **data})
    if problems:
        return None, _unique(f"{path}: {reason}" if path else reason for path, reason in problems)
    return settings, []


_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(
    value: Any, path: str, environ: Mapping[str, str], problems: list[tuple[str, str]]
) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, _join(path, k), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "${"
        if name not in environ:
            problems.append((path, f"environment variable {name} is not set"))
            return ""
        return environ[name]

    return _VARIABLE.sub(replace, value)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}.{key}" if path else key


def _key_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, part)
    return path


# Keys whose values may hold credentials (a database or webhook URL can embed a password or a
# token), so a problem never quotes them.
_SECRET_KEYS = {"secret", "password", "token", "api_key", "webhook_secret", "recording_url_secret"}
_QUIET_KEYS = _SECRET_KEYS | {"url"}

_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a file path",
}


_BOUNDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}


def _explain(error: ErrorDetails) -> list[tuple[str, str]]:
    loc = error["loc"]
    path = _key_path(loc)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldProblems):
        return [(f"{path}.{rel}" if path else rel, reason) for rel, reason in cause.problems]
    if kind == "value_error" and cause is not None:
        return [(path, str(cause))]
    if kind in ("list_type", "tuple_type") and isinstance(error["input"], dict):
        return [(path, "must be an array of tables (write each header with double brackets)")]
    if kind == "literal_error":
        reason = f"must be one of {ctx['expected']}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        reason = f"must be {_BOUNDS[kind]} {next(iter(ctx.values())):g}"
    else:
        reason = _REASONS.get(kind) or error["msg"][:1].lower() + error["msg"][1:]
    return [(path, reason + _got(loc, error["input"], kind))]


def _got(loc: tuple[str | int, ...], value: Any, kind: str) -> str:
    names = [part for part in loc if isinstance(part, str)]
    if kind in ("missing", "extra_forbidden") or (names and names[-1] in _QUIET_KEYS):
        return ""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 60):
        return f" (got {value!r})"
    return ""


def _unique(lines: Any) -> list[str]:
    return list(dict.fromkeys(lines))
