"""`obzvon bench e2e` as an admin runs it, tiny: the daemon really dials the simulator, the
desktops really answer over HTTP, and the figures come back in their documented shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.bench_cli import bench
from benchmarks.e2e_load import Probe
from pbx.dialplan import CONTEXT_CONNECT, USEREVENT_ANSWERED
from pbx.protocol import Frame

RUN_FIGURES = {
    "attempts_per_s",
    "orders_per_s",
    "cpu_s_per_1000_attempts",
    "cpu_share",
    "reaction_ms",
    "answered",
    "put_through_at_once",
    "orders_refused",
    "originates_not_sent",
    "flush_s",
    "engine",
}


@pytest.mark.slow
def test_bench_e2e_runs_the_daemon_against_the_simulator_and_ends_with_json() -> None:
    # A process of its own, as `obzvon bench e2e` runs: a whole daemon left in the test process
    # (its threads, its heap) would weigh on the timing of the tests that follow.
    args = ["e2e", "--operators", "20", "--rate", "5", "--seconds", "4", "--warmup", "3"]
    obzvon = Path(sys.executable).with_name("obzvon")
    result = subprocess.run(
        [str(obzvon), "bench", *args, "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "e2e: 20 operators" in result.stdout
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"machine", "params", "attempts_per_s", "reaction_p99_ms", "targets"} <= set(last)
    assert last["params"]["operators"] == 20
    assert set(last["targets"]) == {"attempts_per_s", "reaction_p99_ms"}
    (run,) = last["runs"]
    assert RUN_FIGURES <= set(run)
    # calls really happened, end to end: dialled, answered, put through, disposed of over HTTP
    assert run["attempts_per_s"] > 0
    assert run["engine"]["originated"] > 0
    assert run["put_through_at_once"] > 0
    assert run["reaction_ms"]["samples"] > 0
    assert run["reaction_ms"]["p99"] > 0
    assert run["cpu_s_per_1000_attempts"] > 0
    assert run["engine"]["dispositions"] > 0


def test_bench_e2e_refuses_a_floor_too_small_for_the_rate() -> None:
    result = CliRunner().invoke(bench, ["e2e", "--operators", "2", "--rate", "50"])
    assert result.exit_code == 2
    assert "add operators" in result.output


def _frame(*fields: tuple[str, str]) -> Frame:
    return Frame(fields=fields)


def test_the_probe_pairs_an_answered_customer_with_the_redirect_that_follows() -> None:
    probe = Probe()
    channel = "PJSIP/79010000001-00000001"
    answered = _frame(
        ("Event", "UserEvent"),
        ("Channel", channel),
        ("UserEvent", USEREVENT_ANSWERED),
        ("Call", "c-1"),
    )
    probe.observe(answered, True)
    probe.observe(_frame(("Action", "Originate"), ("Channel", "PJSIP/790@trunk")), False)
    probe.observe(_frame(("Action", "MixMonitor"), ("Channel", channel)), False)
    redirect = _frame(
        ("Action", "Redirect"), ("Channel", channel), ("Context", CONTEXT_CONNECT), ("Exten", "1")
    )
    probe.observe(redirect, False)
    probe.observe(redirect, False)  # a second connect (after a missed one) is not the reaction
    assert set(probe.answered) == set(probe.redirected) == set(probe.recorded) == {"c-1"}
    assert probe.redirected["c-1"] >= probe.answered["c-1"]
    assert len(probe.originates) == 1
