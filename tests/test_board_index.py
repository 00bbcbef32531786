"""The board's index of operators by state agrees with a scan of the whole floor."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, note, settings
from hypothesis import strategies as st

from acd.board import OperatorBoard
from acd.errors import AcdError
from acd.states import TRANSITIONS, OperatorState
from tests.test_acd_board import DO, profile

S = OperatorState


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 99), st.sampled_from([True] * 5 + [False])),
        min_size=10,
        max_size=120,
    )
)
def test_the_state_index_agrees_with_a_scan_of_the_floor(
    steps: list[tuple[int, int, bool]],
) -> None:
    # free() and in_states() read an index kept as operators move; after a random walk over
    # the legal actions (some refused for an unregistered phone) they must give what scanning
    # every operator gives.
    board = OperatorBoard()
    ids = [f"op{i}" for i in range(3)]
    for i, op_id in enumerate(ids):
        board.add(profile(op_id, endpoint=f"10{i:02d}"), 0.0)
    seen: set[OperatorState] = set()
    for t, (who, pick, registered) in enumerate(steps, start=1):
        op_id = ids[who]
        board.set_registered(f"10{who:02d}", registered, float(t))
        legal = sorted((a for a in TRANSITIONS[board.get(op_id).state] if a in DO), key=str)
        try:
            DO[legal[pick % len(legal)]](_Renamed(board, op_id), float(t))
        except AcdError:
            pass
        everyone = board.all()
        seen.update(v.state for v in everyone)
        assert [v.id for v in board.free("confirm")] == [
            v.id for v in everyone if v.state is S.READY and v.registered
        ]
        busy = {S.RESERVED, S.RINGING, S.TALKING, S.WRAPUP}
        assert [v.id for v in board.in_states(busy)] == [v.id for v in everyone if v.state in busy]
    note(f"states reached: {sorted(seen)}")


class _Renamed:
    """The board, with `DO`'s actions on `OP` aimed at another operator."""

    def __init__(self, board: OperatorBoard, op_id: str) -> None:
        self._board, self._op_id = board, op_id

    def __getattr__(self, name: str) -> Callable[..., object]:
        method = getattr(self._board, name)
        return lambda _op, *args: method(self._op_id, *args)
