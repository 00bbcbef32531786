"""The config file: demo defaults, every problem at once with its key path, env secrets, CLI."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from dialer.cli import main
from dialer.config import (
    CallingWindow,
    CampaignSettings,
    ConfigError,
    OperatorSettings,
    RetryPolicy,
    Settings,
    check_config,
    load_settings,
    parse_settings,
)

REPO = Path(__file__).resolve().parent.parent

BROKEN = """\
[database]
url = "mysql://u:p@db/shop"

[[campaigns]]
id = "confirm"
abandon_targt = 0.01

[[campaigns]]
id = "confirm"
pacing = "fast"

[[campaigns]]
id = "reminders"
abandon_target = 0.2
calling_window = "21:00-09:00"
connect_budget_s = 0
operators = ["1001", "9999"]
retry = { no_answer = [900, -5] }

[[operators]]
id = 1001
skills = { cosmetics = 11 }
campaigns = ["nowhere"]
"""


def write(tmp_path: Path, text: str, name: str = "obzvon.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    problems = check_config(write(tmp_path, BROKEN), environ={})

    assert problems == [
        "database.url: unsupported driver 'mysql'; use sqlite+aiosqlite:///FILE "
        "or postgresql+asyncpg://USER@HOST/DB",
        "campaigns[0].abandon_targt: unknown key",
        "campaigns[1].pacing: must be one of 'progressive', 'adaptive' or 'predictive' "
        "(got 'fast')",
        "campaigns[2].abandon_target: must be between 0 and 0.05",
        "campaigns[2].calling_window: start must be before end (a window cannot cross midnight)",
        "campaigns[2].connect_budget_s: must be greater than 0 and at most 2",
        "campaigns[2].retry.no_answer[1]: must be greater than 0 (got -5)",
        "operators[0].skills.cosmetics: must be at most 10 (got 11)",
        "campaigns[1].id: duplicate 'confirm' (also campaigns[0])",
        "campaigns[2].operators[1]: no operator '9999'",
        "operators[0].campaigns[0]: no campaign 'nowhere'",
    ]


def test_a_toml_syntax_error_names_its_line_and_column(tmp_path: Path) -> None:
    problems = check_config(write(tmp_path, '[http]\nlisten = "127.0.0.1:8080\n'))

    assert len(problems) == 1
    assert problems[0].startswith("TOML syntax error:")
    assert "line 2, column" in problems[0]


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    assert check_config(tmp_path / "absent.toml") == [f"{tmp_path / 'absent.toml'}: file not found"]


def test_check_config_command_exits_2_and_prints_every_problem(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(write(tmp_path, BROKEN))])

    output = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2
    assert "campaigns[2].abandon_target: must be between 0 and 0.05" in output
    assert "11 problem(s)" in output


def test_check_config_command_accepts_a_good_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(write(tmp_path, ""))])

    assert result.exit_code == 0
    assert result.output.strip().endswith("OK")


def test_db_upgrade_command_refuses_a_broken_config_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", str(path)])

    assert result.exit_code == 2
    assert "campaigns[0].abandon_targt: unknown key" in " ".join(result.output.split())


def test_an_empty_file_is_the_demo(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))

    assert settings == Settings() == load_settings(None)
    assert [(a.name, a.host, a.port, a.username) for a in settings.ami] == [
        ("sim", "127.0.0.1", 5038, "obzvon")
    ]
    assert settings.ami[0].secret.get_secret_value() == "obzvon"
    assert settings.database.url == "sqlite+aiosqlite:///obzvon.db"
    assert settings.mqtt is None
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert settings.crm.adapter == "none"
    (campaign,) = settings.campaigns
    assert (campaign.id, campaign.line, campaign.abandon_target) == (
        "confirmation",
        "confirmation",
        0.03,
    )
    assert str(campaign.calling_window) == "09:00-21:00"
    assert campaign.connect_budget_s == 2.0
    assert campaign.retry.no_answer == (900, 1800, 3600, 7200)
    assert settings.operators == ()


def test_the_example_file_checks_clean() -> None:
    example = REPO / "obzvon.example.toml"

    assert check_config(example, environ={}) == []
    settings = load_settings(example, environ={})
    assert settings.campaign("reminders").pacing == "progressive"
    assert settings.operator("1002").categories_only == ("cosmetics",)


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    text = """\
[[ami]]
secret = "${AMI_SECRET}"
[database]
url = "postgresql+asyncpg://obzvon:${PG_PASSWORD}@db/obzvon"
[[operators]]
id = "1001"
token = "$${literal}"
"""
    settings = load_settings(
        write(tmp_path, text), environ={"AMI_SECRET": "s3cret", "PG_PASSWORD": "pw"}
    )

    assert settings.ami[0].secret.get_secret_value() == "s3cret"
    assert settings.database.url == "postgresql+asyncpg://obzvon:pw@db/obzvon"
    token = settings.operators[0].token
    assert token is not None and token.get_secret_value() == "${literal}"


def test_a_missing_environment_variable_is_one_problem_at_its_key_path(tmp_path: Path) -> None:
    text = '[[ami]]\nsecret = "${AMI_SECRET}"\nport = "${AMI_PORT}"\n'

    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})

    assert caught.value.problems == [
        "ami[0].secret: environment variable AMI_SECRET is not set",
        "ami[0].port: environment variable AMI_PORT is not set",
    ]


def test_problems_never_quote_secrets(tmp_path: Path) -> None:
    text = """\
[database]
url = "sqlite:///hunter2"
[crm]
adapter = "amocrm"
url = "ftp://hunter2"
[[operators]]
id = "1"
token = "hunter2"
[[operators]]
id = "2"
token = "hunter2"
"""
    problems = check_config(write(tmp_path, text))

    assert len(problems) == 3
    assert not [p for p in problems if "hunter2" in p]


def test_settings_built_in_code_obey_the_cross_field_rules() -> None:
    with pytest.raises(ValidationError, match=r"no operator 'ghost'"):
        Settings(
            campaigns=(CampaignSettings(id="a", operators=("ghost",)),),
            operators=(OperatorSettings(id="1"),),
        )


def test_abandon_target_zero_allows_progressive_pacing_only() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings('[[campaigns]]\nid = "a"\nabandon_target = 0\n')

    assert caught.value.problems == [
        "campaigns[0].pacing: predictive pacing abandons calls; abandon_target = 0 allows "
        "progressive only"
    ]
    assert parse_settings('[[campaigns]]\nid = "a"\nabandon_target = 0\npacing = "progressive"')


def test_operator_name_and_endpoint_default_from_the_id() -> None:
    settings = parse_settings("[[operators]]\nid = 1001\n")

    (op,) = settings.operators
    assert (op.id, op.name, op.endpoint, op.role, op.token) == (
        "1001",
        "1001",
        "PJSIP/1001",
        "operator",
        None,
    )


def test_a_relative_tls_ca_is_found_next_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    text = '[[ami]]\ntls = true\ntls_ca = "ca.pem"\n'
    text += '[[ami]]\nname = "b"\ntls = true\ntls_ca = "no.pem"\n'

    problems = check_config(write(tmp_path, text))

    assert problems == [f"ami[1].tls_ca: file not found: {tmp_path / 'no.pem'}"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9-21", "must look like HH:MM-HH:MM (got '9-21')"),
        ("09:00-25:00", "no such time of day 25:00"),
        ("21:00-21:00", "start must be before end (a window cannot cross midnight)"),
    ],
)
def test_a_malformed_calling_window_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        CallingWindow.parse(text)


def test_a_calling_window_includes_its_start_and_excludes_its_end() -> None:
    window = CallingWindow.parse("09:00-24:00")

    assert window.contains(time(9, 0))
    assert window.contains(time(23, 59, 59))
    assert not window.contains(time(8, 59, 59))
    assert not CallingWindow.parse("09:00-21:00").contains(time(21, 0))


def test_the_last_retry_delay_repeats() -> None:
    retry = RetryPolicy()

    assert [retry.delay_s("no_answer", n) for n in range(1, 7)] == [
        900,
        1800,
        3600,
        7200,
        7200,
        7200,
    ]
    assert retry.delay_s("busy", 3) == 300
    with pytest.raises(ValueError):
        retry.delay_s("answered", 1)
