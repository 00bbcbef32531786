"""asterisk-conf/: the dialplan speaks pbx/dialplan.py's names, AMI and PJSIP stay locked down."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pbx import dialplan

CONF = Path(__file__).parent.parent / "asterisk-conf"


@dataclass
class Section:
    name: str
    templates: list[str]
    is_template: bool
    options: list[tuple[str, str]] = field(default_factory=list)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.options if k == key]

    def value(self, key: str) -> str:
        (only,) = self.values(key)
        return only


HEADER = re.compile(r"^\[([^\]]+)\](?:\(([^)]*)\))?$")
OPTION = re.compile(r"^([\w-]+)\s*=>?\s*(.*)$")


def parse(name: str) -> list[Section]:
    """Asterisk's .conf syntax: [section](template, ...), key = value, key => value, ; comments."""
    sections: list[Section] = []
    for raw in (CONF / name).read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if header := HEADER.match(line):
            bases = [b.strip() for b in (header.group(2) or "").split(",") if b.strip()]
            sections.append(
                Section(
                    name=header.group(1),
                    templates=[b for b in bases if b != "!"],
                    is_template="!" in bases,
                )
            )
            continue
        option = OPTION.match(line)
        assert option and sections, f"{name}: cannot read {raw!r}"
        sections[-1].options.append((option.group(1), option.group(2).strip()))
    return sections


def names(prefix: str) -> dict[str, str]:
    return {k: v for k, v in vars(dialplan).items() if k.startswith(prefix)}


# --- extensions.conf -------------------------------------------------------------------------

DIALPLAN_TEXT = (CONF / "extensions.conf").read_text(encoding="utf-8")
CONTEXTS = {s.name: s for s in parse("extensions.conf") if s.name != "general"}


def extensions(context: str) -> set[str]:
    return {v.split(",", 1)[0] for v in CONTEXTS[context].values("exten")}


def test_every_dialplan_context_is_in_extensions_conf() -> None:
    contexts = set(names("CONTEXT_").values())
    assert contexts <= set(CONTEXTS)


def test_every_obzvon_context_in_extensions_conf_is_defined_in_pbx_dialplan() -> None:
    ours = {c for c in CONTEXTS if c.startswith("obzvon-")}
    assert ours == set(names("CONTEXT_").values())
    mentioned = set(re.findall(r"\bobzvon-[\w-]+", DIALPLAN_TEXT))
    assert mentioned <= ours


@pytest.mark.parametrize(
    ("context", "exten"),
    [
        (dialplan.CONTEXT_OUTBOUND, dialplan.EXTEN_ANSWERED),
        (dialplan.CONTEXT_OUTBOUND, dialplan.EXTEN_AMD),
        (dialplan.CONTEXT_OUTBOUND, dialplan.EXTEN_WAIT),
        (dialplan.CONTEXT_ABANDON, dialplan.EXTEN_ABANDON),
        (dialplan.CONTEXT_INBOUND, dialplan.EXTEN_WAIT),
        (dialplan.CONTEXT_INBOUND, dialplan.EXTEN_HOLD),
        (dialplan.CONTEXT_INBOUND, dialplan.EXTEN_CALLBACK_OFFER),
    ],
)
def test_the_dialplans_extensions_are_where_the_dialer_sends_calls(
    context: str, exten: str
) -> None:
    assert exten in extensions(context)


@pytest.mark.parametrize(
    "context", [dialplan.CONTEXT_CONNECT, dialplan.CONTEXT_SPY, dialplan.CONTEXT_CONSULT]
)
def test_contexts_taking_an_endpoint_name_match_digits_and_names(context: str) -> None:
    assert "_[A-Za-z0-9]." in extensions(context)


def test_shop_numbers_are_taken_with_and_without_a_plus() -> None:
    assert {"_X.", "_+X."} <= extensions(dialplan.CONTEXT_INBOUND)


def test_the_user_events_are_exactly_those_of_pbx_dialplan() -> None:
    used = set(re.findall(r"UserEvent\(([^,)]+)", DIALPLAN_TEXT))
    assert used == set(names("USEREVENT_").values())


def test_every_user_event_names_the_call() -> None:
    found = re.findall(r"UserEvent\(([^\n]*)\)\s*$", DIALPLAN_TEXT, re.MULTILINE)
    assert len(found) >= len(names("USEREVENT_"))
    for args in found:
        assert "Call: ${OBZVON_CALL}" in args.split(",")[1:], args


def test_the_dialplan_reads_the_variables_of_pbx_dialplan_and_no_others() -> None:
    read = set(re.findall(r"\$\{(OBZVON_\w+)", DIALPLAN_TEXT))
    assert read == set(names("VAR_").values())


def test_the_dialplan_sets_only_the_call_id_and_where_a_caller_waits() -> None:
    # anything else the dialer sets itself; the call id is made inheritable for the operator
    assigned = set(re.findall(r"Set\(_*(OBZVON_\w+)=", DIALPLAN_TEXT))
    assert assigned == {dialplan.VAR_CALL, dialplan.VAR_RETURN}


def test_a_failed_connect_returns_the_caller_to_a_context_where_they_wait() -> None:
    returns = set(re.findall(r"Set\(OBZVON_RETURN=([\w-]+)\)", DIALPLAN_TEXT))
    assert returns == {dialplan.CONTEXT_OUTBOUND, dialplan.CONTEXT_INBOUND}
    for context in returns:
        assert dialplan.EXTEN_WAIT in extensions(context)


def test_every_static_goto_and_label_exists() -> None:
    for name, section in CONTEXTS.items():
        lines = [v for k, v in section.options if k in ("exten", "same")]
        labels = {m for line in lines for m in re.findall(r"^(?:[^,]+,)?n\((\w+)\)", line)}
        for line in lines:
            for label in re.findall(r"GotoIf\([^?]*\?(\w+)\)", line):
                assert label in labels, f"[{name}] {line}"
            for args in re.findall(r"\bGoto\(([^$()]*)\)", line):
                parts = args.split(",")
                if len(parts) == 3:
                    assert parts[1] in extensions(parts[0]), f"[{name}] {line}"
                elif len(parts) == 2:
                    assert parts[0] in extensions(name), f"[{name}] {line}"
                else:
                    assert parts[0] in labels, f"[{name}] {line}"


def test_a_bridged_call_is_not_reported_as_a_failed_connect() -> None:
    connect = [v for k, v in CONTEXTS[dialplan.CONTEXT_CONNECT].options if k in ("exten", "same")]
    dial = next(i for i, line in enumerate(connect) if "Dial(PJSIP/${EXTEN}" in line)
    failed = next(i for i, line in enumerate(connect) if dialplan.USEREVENT_CONNECT_FAILED in line)
    assert any('"${DIALSTATUS}" = "ANSWER"' in line for line in connect[dial:failed])


def raw_lines(context: str, exten: str) -> list[str]:
    """The priorities of `exten` in `context` as written: ``1,App(...)``, ``n(label),App(...)``."""
    out: list[str] = []
    current = None
    for key, value in CONTEXTS[context].options:
        if key == "exten":
            current, _, value = value.partition(",")
        elif key != "same":
            continue
        if current == exten:
            out.append(value)
    return out


def steps(context: str, exten: str) -> list[str]:
    """The applications of `exten` in `context`, in priority order."""
    return [line.partition(",")[2] for line in raw_lines(context, exten)]


def test_the_wait_loop_announces_the_position_and_ends_in_the_abandon_message() -> None:
    wait = steps(dialplan.CONTEXT_INBOUND, dialplan.EXTEN_WAIT)
    assert f"MusicOnHold(default,{dialplan.ANNOUNCE_EVERY_S})" in wait
    assert "SayNumber(${OBZVON_POSITION})" in wait
    assert wait[-1] == f"Goto({dialplan.CONTEXT_ABANDON},{dialplan.EXTEN_ABANDON},1)"
    (rounds,) = re.findall(r"GotoIf\(\$\[\$\{ROUNDS\} >= (\d+)\]\?gone\)", " ".join(wait))
    # the dialer's longest queue is far shorter than this: reaching the end means it is gone
    assert int(rounds) * dialplan.ANNOUNCE_EVERY_S == 15 * 60


def test_the_callback_offer_reports_yes_for_1_and_no_for_anything_else() -> None:
    offer = steps(dialplan.CONTEXT_INBOUND, dialplan.EXTEN_CALLBACK_OFFER)
    assert offer[0].startswith("Read(OFFER,obzvon/callback-offer,1,")
    assert offer[1] == 'GotoIf($["${OFFER}" = "1"]?booked)'
    event = f"UserEvent({dialplan.USEREVENT_CALLBACK},Call: ${{OBZVON_CALL}},Accepted: "
    no, back = offer[2:4]
    assert (no, back) == (event + "no)", f"Goto({dialplan.EXTEN_WAIT},1)")
    booked = raw_lines(dialplan.CONTEXT_INBOUND, dialplan.EXTEN_CALLBACK_OFFER)
    start = next(i for i, line in enumerate(booked) if line.startswith("n(booked),"))
    assert offer[start:] == [event + "yes)", "Playback(obzvon/callback-booked)", "Hangup()"]


def test_a_caller_put_on_hold_waits_with_the_inbound_callers() -> None:
    assert steps(dialplan.CONTEXT_INBOUND, dialplan.EXTEN_HOLD) == [
        f"Set(OBZVON_RETURN={dialplan.CONTEXT_INBOUND})",
        f"Goto({dialplan.EXTEN_WAIT},1)",
    ]


def test_a_consultation_reports_its_end_whatever_the_dial_status_and_waits() -> None:
    consult = steps(dialplan.CONTEXT_CONSULT, "_[A-Za-z0-9].")
    dial = next(i for i, line in enumerate(consult) if line.startswith("Dial(PJSIP/${EXTEN},"))
    # g: the dialplan goes on after an answered consultation ends, as after a failed one
    assert consult[dial].endswith(",g)")
    assert consult[dial + 1] == (
        f"UserEvent({dialplan.USEREVENT_CONSULT_ENDED},"
        "Call: ${OBZVON_CALL},DialStatus: ${DIALSTATUS})"
    )
    assert consult[dial + 2].startswith("Wait(")
    assert consult[-1] == "Hangup()"


def test_the_operators_channel_inherits_the_call_id_from_the_connect() -> None:
    connect = steps(dialplan.CONTEXT_CONNECT, "_[A-Za-z0-9].")
    dial = next(i for i, line in enumerate(connect) if line.startswith("Dial("))
    assert "Set(__OBZVON_CALL=${OBZVON_CALL})" in connect[:dial]


def test_the_spy_context_offers_listen_whisper_and_barge() -> None:
    options = re.findall(r"ChanSpy\(PJSIP/\$\{EXTEN\}-,(\w+)\)", DIALPLAN_TEXT)
    assert sorted(options) == ["qbES", "qbESB", "qbESw"]


# --- manager.conf ----------------------------------------------------------------------------

MANAGER = {s.name: s for s in parse("manager.conf")}


def test_ami_listens_on_loopback_only_without_http() -> None:
    general = MANAGER["general"]
    assert general.value("enabled") == "yes"
    assert general.value("bindaddr") == "127.0.0.1"
    assert general.value("port") == "5038"
    assert general.value("webenabled") == "no"
    assert general.value("displayconnects") == "no"


def test_the_only_ami_user_is_obzvon_reachable_from_loopback() -> None:
    assert set(MANAGER) == {"general", "obzvon"}
    user = MANAGER["obzvon"]
    assert user.values("deny") == ["0.0.0.0/0.0.0.0"]
    assert user.values("permit") == ["127.0.0.1/255.255.255.255"]
    assert user.value("secret") == "CHANGE-ME"


def test_the_ami_user_has_exactly_the_rights_obzvon_needs() -> None:
    user = MANAGER["obzvon"]
    assert user.value("read").split(",") == ["system", "call", "user", "agent"]
    assert user.value("write").split(",") == ["system", "call", "originate"]


# --- pjsip.conf ------------------------------------------------------------------------------

PJSIP = parse("pjsip.conf")
TEMPLATES = {s.name: s for s in PJSIP if s.is_template}


def resolved(section: Section) -> dict[str, list[str]]:
    """The section's options with those of its templates (the section's own win)."""
    merged: dict[str, list[str]] = {}
    for base in section.templates:
        merged.update(resolved(TEMPLATES[base]))
    own: dict[str, list[str]] = {}
    for key, value in section.options:
        own.setdefault(key, []).append(value)
    return {**merged, **own}


CONCRETE = [(s, resolved(s)) for s in PJSIP if not s.is_template]
ENDPOINTS = {s.name: opts for s, opts in CONCRETE if opts.get("type") == ["endpoint"]}


def test_there_is_no_guest_endpoint() -> None:
    assert "anonymous" not in {s.name for s in PJSIP}
    (glob,) = [opts for _, opts in CONCRETE if opts.get("type") == ["global"]]
    assert "anonymous" not in glob["endpoint_identifier_order"][0]


def test_the_example_trunk_and_operators_exist() -> None:
    assert set(ENDPOINTS) == {"trunk", "1001", "1002"}


def test_every_softphone_authenticates_and_cannot_dial_out() -> None:
    for name in ("1001", "1002"):
        endpoint = ENDPOINTS[name]
        assert endpoint["context"] == ["softphones"]
        assert endpoint["auth"] == [name]
        assert "softphones" in CONTEXTS
        assert endpoint["deny"] == ["0.0.0.0/0.0.0.0"]


def test_trunk_calls_enter_the_inbound_context() -> None:
    assert ENDPOINTS["trunk"]["context"] == [dialplan.CONTEXT_INBOUND]


def test_every_password_is_a_placeholder() -> None:
    passwords = [v for _, opts in CONCRETE for v in opts.get("password", [])]
    assert passwords and all(p.startswith("CHANGE-ME") for p in passwords)
