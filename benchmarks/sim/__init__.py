"""A discrete-event simulation of a confirmation call centre around the real dialer engine.

`load_scenario` reads a scenario file, `World` draws its orders, operators and call fates from a
seed, and `Simulation` runs the engine (`dialer.engine.engine.DialerEngine` with its pacers,
`acd.board.OperatorBoard` and `acd.routing` policies) against them on a virtual clock.
"""

from __future__ import annotations

from benchmarks.sim.harness import Simulation
from benchmarks.sim.metrics import RunResult
from benchmarks.sim.scenario import Scenario, ScenarioError, load_scenario
from benchmarks.sim.world import World

__all__ = ["RunResult", "Scenario", "ScenarioError", "Simulation", "World", "load_scenario"]
