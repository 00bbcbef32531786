"""An AMI-speaking stand-in for Asterisk 22 that models customers and operators.

On the wire it is meant to be indistinguishable from the real thing for the events obzvon uses:
messages, fields and field order are those of the golden captures in
``tests/fixtures/ami-golden`` (``tests/test_sim_conformance.py`` replays them all).

Layout: `server` (the TCP listener, `AsteriskSim`), `connection` (one AMI session), `actions`
(the AMI actions), `switch` (channels, bridges, tasks), `frames` (message templates), `legs`,
`originate`, `inbound`, `dial`, `hangup` (call behaviour), `dialplan`, `apps` and `expr` (the
contexts), `model` (who answers and for how long), `clock` (scaled time).
"""

from __future__ import annotations

from .model import CallModel, FarEnd, NumberScript, OperatorScript
from .server import AsteriskSim, SimStatistics

__all__ = [
    "AsteriskSim",
    "CallModel",
    "FarEnd",
    "NumberScript",
    "OperatorScript",
    "SimStatistics",
]
