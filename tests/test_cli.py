"""The `obzvon` command line as an admin runs it: real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from pbx.client import AmiClient
from pbx.commands import Originate
from tests.floor import free_port

OBZVON = str(Path(sys.executable).with_name("obzvon"))


async def _run(*args: str, limit_s: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        OBZVON, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(limit_s):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_help_lists_the_commands() -> None:
    code, out, _ = await _run("--help", limit_s=30)
    assert code == 0
    for command in ("check-config", "db", "sim", "run", "demo"):
        assert command in out


async def test_sim_command_serves_ami_that_a_client_can_originate_on() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        OBZVON, "sim", "--listen", f"127.0.0.1:{port}", "--time-scale", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        async with AmiClient(
            host="127.0.0.1", port=port, username="obzvon", secret="obzvon"
        ) as ami:
            # the golden dialplan's rule: a number ending in 1 is busy
            response = await ami.originate(
                Originate(
                    channel="Local/79001234561@sim-customer",
                    context="dialer",
                    exten="answered",
                    channel_id="0b7c6f3e-8f1e-4a40-9a63-7d5c1f0e6a11",
                    timeout_ms=30_000,
                )
            )
        assert response.reason == 5
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.slow
async def test_demo_runs_headless_and_prints_a_json_summary_last() -> None:
    env_http = f"127.0.0.1:{free_port()}"
    code, out, err = await _run(
        "demo", "--for", "8", "--json", "--http", env_http, "--time-scale", "30", limit_s=90
    )
    assert code == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    for key in (
        "orders", "calls_placed", "live_answers", "abandons", "abandon_rate", "confirmed",
        "ttfc_p95_s", "operators",
    ):  # fmt: skip
        assert key in summary
    assert summary["operators"] == 12
    assert summary["orders"] > 0 and summary["calls_placed"] > 0


def test_check_config_exit_code_is_two_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[campaigns]]\nid = "a"\nabandon_target = 0.5\n[[campaigns]]\nid = "b"\nwrapup_s = -1\n'
    )
    code, _, err = asyncio.run(_run("check-config", str(bad), limit_s=30))
    assert code == 2
    assert "campaigns[0].abandon_target" in err and "campaigns[1].wrapup_s" in err


def test_fraud_load_reads_a_csv_with_a_progress_bar_and_saves_the_base(tmp_path: Path) -> None:
    csv = tmp_path / "fraud.csv"
    csv.write_text("79001234567\n8 (900) 123-45-68\nnot a number\n+7 900 123 45 69\n")
    out = tmp_path / "base.npy"
    code, stdout, _ = asyncio.run(_run("fraud", "load", str(csv), "--out", str(out), limit_s=60))
    assert code == 0
    assert "3 numbers kept, 1 lines skipped" in stdout
    from crm_bridge.intake.fraud import FraudBase

    base = FraudBase.load(out)
    assert base.contains("+79001234568") and not base.contains("+79001234560")
