"""Rules between keys of a whole settings table: unique ids, references, one secret per person.

They run on the raw table read from a file as well as on a built `Settings`, so that they are
reported together with every other problem even when some keys are invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from dialer.config.fields import id_text

# The name an [[ami]] entry gets when it has none; two unnamed servers therefore clash.
DEFAULT_AMI_NAME = "asterisk"


def cross_field_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems between keys of a whole settings table, each as (key path, reason).

    Works on a raw, possibly invalid table (a parsed TOML file): entries of the wrong shape are
    skipped, since validation reports those. The caller fills in absent sections with their
    defaults; an absent section here counts as empty.
    """
    campaigns = data.get("campaigns", [])
    operators = data.get("operators", [])
    ami = data.get("ami", [])
    problems: list[tuple[str, str]] = []
    problems += _duplicates("ami", _values(ami, "name", DEFAULT_AMI_NAME), "name")
    campaign_ids = _values(campaigns, "id")
    problems += _duplicates("campaigns", campaign_ids, "id")
    operator_ids = _values(operators, "id")
    problems += _duplicates("operators", operator_ids, "id")
    endpoints = [(i, v) for i, v in _values(operators, "endpoint") if v]
    endpoints += [
        (i, f"PJSIP/{op_id}")
        for i, op_id in operator_ids
        if isinstance(operators[i], Mapping) and "endpoint" not in operators[i]
    ]
    problems += _duplicates("operators", sorted(endpoints), "endpoint")
    problems += _duplicates("operators", _values(operators, "token"), "token", show=False)
    known_ops = {v for _, v in operator_ids}
    if known_ops:
        for i, campaign in _tables(campaigns):
            for j, op_id in _listed(campaign.get("operators")):
                if op_id not in known_ops:
                    problems.append((f"campaigns[{i}].operators[{j}]", f"no operator {op_id!r}"))
    known_campaigns = {v for _, v in campaign_ids}
    problems += _inbound_problems(campaigns, known_campaigns)
    for i, operator in _tables(operators):
        for j, campaign_id in _listed(operator.get("campaigns")):
            if campaign_id not in known_campaigns:
                problems.append((f"operators[{i}].campaigns[{j}]", f"no campaign {campaign_id!r}"))
    return problems


def _inbound_problems(campaigns: Any, known: set[str]) -> list[tuple[str, str]]:
    """Inbound lines: each number belongs to one line; overflow and callbacks name campaigns
    that exist (a callback campaign must be an outbound one)."""
    problems: list[tuple[str, str]] = []
    inbound_ids = {
        str(c.get("id")) for _, c in _tables(campaigns) if isinstance(c.get("inbound"), Mapping)
    }
    seen: dict[str, str] = {}
    for i, campaign in _tables(campaigns):
        inbound = campaign.get("inbound")
        if not isinstance(inbound, Mapping):
            continue
        path = f"campaigns[{i}].inbound"
        for j, number in _listed(inbound.get("numbers")):
            digits = number.lstrip("+")
            if digits in seen:
                problems.append((f"{path}.numbers[{j}]", f"{number} is already {seen[digits]}'s"))
            seen[digits] = str(campaign.get("id"))
        for k, step in _tables(inbound.get("overflow")):
            for j, line in _listed(step.get("lines")):
                if line not in known:
                    problems.append((f"{path}.overflow[{k}].lines[{j}]", f"no campaign {line!r}"))
        target = inbound.get("callback_campaign")
        if isinstance(target, str):
            if target not in known:
                problems.append((f"{path}.callback_campaign", f"no campaign {target!r}"))
            elif target in inbound_ids:
                problems.append((f"{path}.callback_campaign", f"{target!r} is an inbound line"))
    return problems


def _tables(items: Any) -> Iterable[tuple[int, Mapping[str, Any]]]:
    if isinstance(items, list | tuple):
        yield from ((i, item) for i, item in enumerate(items) if isinstance(item, Mapping))


def _listed(items: Any) -> Iterable[tuple[int, str]]:
    if isinstance(items, list | tuple):
        yield from ((j, str(id_text(v))) for j, v in enumerate(items) if isinstance(v, str | int))


def _values(items: Any, key: str, default: str | None = None) -> list[tuple[int, str]]:
    out = []
    for i, item in _tables(items):
        value = item.get(key, default)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str | int) and not isinstance(value, bool):
            out.append((i, str(value)))
    return out


def _duplicates(
    section: str, values: list[tuple[int, str]], key: str, *, show: bool = True
) -> list[tuple[str, str]]:
    first: dict[str, int] = {}
    problems = []
    for i, value in values:
        if value in first:
            what = f"{value!r} " if show else ""
            reason = f"duplicate {what}(also {section}[{first[value]}])"
            problems.append((f"{section}[{i}].{key}", reason))
        else:
            first[value] = i
    return problems
