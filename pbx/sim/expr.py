"""Asterisk's ``$[...]`` expressions and ``GotoIf`` conditions, the part the dialplan uses.

Operators, lowest precedence first: ``|``, ``&``, the comparisons ``= != < > <= >=``, ``+ -``,
``* / %``, unary ``- !``; parentheses; ``"quoted"`` strings. Values are strings: a comparison of
two numbers compares them as numbers, anything else as text; it gives ``1`` or ``0``. Anything
else (``=~``, ``:``, ``?:``, arithmetic on text) raises `ExpressionError`: the simulator's own
contexts never use it, so meeting it is a bug in them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Final


class ExpressionError(ValueError):
    """An expression the simulator does not evaluate."""


_TOKEN: Final = re.compile(r'\s*(?:"([^"]*)"|(!=|<=|>=|[=<>+\-*/%&|()!])|([^\s"=<>!+\-*/%&|()]+))')

# each comparison as a test of the sign of (left - right)
_COMPARE: Final[dict[str, Callable[[int], bool]]] = {
    "=": lambda sign: sign == 0,
    "!=": lambda sign: sign != 0,
    "<": lambda sign: sign < 0,
    ">": lambda sign: sign > 0,
    "<=": lambda sign: sign <= 0,
    ">=": lambda sign: sign >= 0,
}
_ARITHMETIC: Final[dict[str, Callable[[float, float], float]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}
_LEVELS: Final[tuple[frozenset[str], ...]] = (
    frozenset("|"),
    frozenset("&"),
    frozenset(_COMPARE),
    frozenset("+-"),
    frozenset("*/%"),
)


def truthy(condition: str) -> bool:
    """``GotoIf``'s test: empty is false, an integer is its value, any other text is true."""
    text = condition.strip()
    if not text:
        return False
    try:
        return int(text) != 0
    except ValueError:
        return True


def evaluate(text: str) -> str:
    """The value of the expression inside ``$[...]``."""
    tokens: list[tuple[str, bool]] = []  # (text, is an operator)
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise ExpressionError(f"cannot read {text!r} at {pos}")
            break
        quoted, op, word = m.groups()
        if op is not None:
            tokens.append((op, True))
        else:
            tokens.append((quoted if quoted is not None else word, False))
        pos = m.end()
    parser = _Parser(tokens, text)
    value = parser.parse(0)
    if parser.pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[parser.pos][0]!r} in {text!r}")
    return value


class _Parser:
    def __init__(self, tokens: list[tuple[str, bool]], text: str) -> None:
        self.tokens, self.text, self.pos = tokens, text, 0

    def _peek_op(self) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos][1]:
            return self.tokens[self.pos][0]
        return None

    def parse(self, level: int) -> str:
        if level == len(_LEVELS):
            return self._unary()
        left = self.parse(level + 1)
        while (op := self._peek_op()) in _LEVELS[level]:
            self.pos += 1
            left = _apply(op or "", left, self.parse(level + 1), self.text)
        return left

    def _unary(self) -> str:
        op = self._peek_op()
        if op == "-":
            self.pos += 1
            return _number_text(-_number(self._unary(), self.text))
        if op == "!":
            self.pos += 1
            return "0" if truthy(self._unary()) else "1"
        if op == "(":
            self.pos += 1
            value = self.parse(0)
            if self._peek_op() != ")":
                raise ExpressionError(f"missing ')' in {self.text!r}")
            self.pos += 1
            return value
        if self.pos >= len(self.tokens) or op is not None:
            # an empty operand, as in $[ = 1], is an empty string to Asterisk
            return ""
        value = self.tokens[self.pos][0]
        self.pos += 1
        return value


def _apply(op: str, left: str, right: str, text: str) -> str:
    if op == "|":
        return left if truthy(left) else right
    if op == "&":
        return left if truthy(left) and truthy(right) else "0"
    if op in _COMPARE:
        a, b = _as_number(left), _as_number(right)
        if a is not None and b is not None:
            sign = (a > b) - (a < b)
        else:
            sign = (left > right) - (left < right)
        return "1" if _COMPARE[op](sign) else "0"
    a, b = _number(left, text), _number(right, text)
    if op in "/%" and b == 0:
        raise ExpressionError(f"division by zero in {text!r}")
    return _number_text(_ARITHMETIC[op](a, b))


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _number(value: str, text: str) -> float:
    number = _as_number(value)
    if number is None:
        raise ExpressionError(f"{value!r} is not a number in {text!r}")
    return number


def _number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
