"""Safe arithmetic on event branches: a whitelist evaluator over Python's ``ast``, in numpy.

Selections (``pt > 30 and abs(eta) < 2.4``) and expression features (``MET_pt / sqrt(HT)``) are
strings from a config file, so they are never given to ``eval``. They are parsed with
``ast.parse(mode="eval")`` and only these nodes are accepted: numbers, names, ``+ - * / ** %``,
unary ``-``/``not``, comparisons (chains too), ``and``/``or``, and calls of the functions in
``FUNCTIONS``. Anything else (attributes, subscripts, lambdas, keyword arguments…) is an error
naming the expression.

Values live on one of two levels: per event (a flat array) or per object (the flat values of a
jagged collection plus its counts per event). An event value meets an object value by being
repeated for each object of its event; the reductions ``sum``, ``max``, ``min``, ``mean`` and
``count`` take an object value to the event level (with 0 for an event without objects).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "log": np.log,
    "exp": np.exp,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "arctan2": np.arctan2,
    "minimum": np.minimum,
    "maximum": np.maximum,
}
REDUCTIONS = ("sum", "max", "min", "mean", "count")
FUNCTIONS = (*ELEMENTWISE, *REDUCTIONS)

_BINARY = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
    ast.Mod: np.mod,
}
_COMPARE = {
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_ALLOWED = (
    ast.Expression,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.UAdd,
    *_BINARY,
    *_COMPARE,
)


class ExpressionError(ValueError):
    """An expression outside the accepted grammar, or mixing incompatible collections."""


@dataclass(frozen=True)
class Value:
    """An array on the event level (``counts is None``) or the object level of a collection."""

    data: np.ndarray
    counts: np.ndarray | None = None


@lru_cache(maxsize=256)
def parse(expression: str) -> ast.Expression:
    """Parse and check ``expression`` against the whitelist.

    Args:
        expression: e.g. ``"pt > 30 and abs(eta) < 2.4"``.

    Returns:
        The checked syntax tree.

    Raises:
        ExpressionError: naming the expression and the construct that is not allowed.
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"expression {expression!r} is not valid: {err.msg}") from err
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExpressionError(
                    f"expression {expression!r}: only the functions {list(FUNCTIONS)!r} "
                    f"may be called, got {ast.unparse(node.func)!r}"
                )
            if node.keywords:
                raise ExpressionError(
                    f"expression {expression!r}: keyword arguments are not allowed"
                )
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ExpressionError(
                    f"expression {expression!r}: only numbers are allowed, got {node.value!r}"
                )
        elif not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"expression {expression!r}: {type(node).__name__} is not allowed "
                f"(numbers, names, arithmetic, comparisons, and/or/not and {list(FUNCTIONS)!r})"
            )
    return tree


def names(expression: str) -> list[str]:
    """The variable names an expression reads, in order of first appearance (not functions)."""
    tree = parse(expression)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    return list(dict.fromkeys(found))


def evaluate(expression: str, resolve: Callable[[str], Value]) -> Value:
    """Evaluate ``expression`` with numpy.

    Args:
        expression: an expression accepted by :func:`parse`.
        resolve: variable name → its value (event or object level).

    Returns:
        The result; booleans come back as a bool array.
    """
    return _Evaluator(expression, resolve).visit(parse(expression).body)


class _Evaluator:
    def __init__(self, expression: str, resolve: Callable[[str], Value]) -> None:
        self.expression, self.resolve = expression, resolve

    def visit(self, node: ast.AST) -> Value:
        with np.errstate(all="ignore"):
            return self._visit(node)

    def _visit(self, node: ast.AST) -> Value:
        if isinstance(node, ast.Constant):
            return Value(np.asarray(float(node.value)))
        if isinstance(node, ast.Name):
            return self.resolve(node.id)
        if isinstance(node, ast.BinOp):
            return self._combine(_BINARY[type(node.op)], node.left, node.right)
        if isinstance(node, ast.UnaryOp):
            operand = self._visit(node.operand)
            if isinstance(node.op, ast.Not):
                return Value(~operand.data.astype(bool), operand.counts)
            if isinstance(node.op, ast.USub):
                return Value(-operand.data, operand.counts)
            return operand
        if isinstance(node, ast.BoolOp):
            join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            result = self._visit(node.values[0])
            for other in node.values[1:]:
                result = self._apply(join, [result, self._visit(other)])
            return result
        if isinstance(node, ast.Compare):
            left, result = node.left, None
            for op, right in zip(node.ops, node.comparators, strict=True):
                step = self._combine(_COMPARE[type(op)], left, right)
                result = step if result is None else self._apply(np.logical_and, [result, step])
                left = right
            return result  # type: ignore[return-value]
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ExpressionError(f"expression {self.expression!r}: cannot evaluate {node!r}")

    def _combine(self, op: Callable[..., np.ndarray], left: ast.AST, right: ast.AST) -> Value:
        return self._apply(op, [self._visit(left), self._visit(right)])

    def _apply(self, op: Callable[..., np.ndarray], values: list[Value]) -> Value:
        levels = [v.counts for v in values if v.counts is not None]
        if not levels:
            return Value(op(*(v.data for v in values)))
        counts = levels[0]
        if any(len(c) != len(counts) or not np.array_equal(c, counts) for c in levels[1:]):
            raise ExpressionError(
                f"expression {self.expression!r} combines collections with different numbers "
                "of objects per event"
            )
        arrays = [
            v.data if v.counts is not None or v.data.ndim == 0 else np.repeat(v.data, counts)
            for v in values
        ]
        return Value(op(*arrays), counts)

    def _call(self, node: ast.Call) -> Value:
        name = node.func.id  # type: ignore[attr-defined]
        args = [self._visit(a) for a in node.args]
        if name in ELEMENTWISE:
            return self._apply(ELEMENTWISE[name], args)
        if len(args) != 1 or args[0].counts is None:
            raise ExpressionError(
                f"expression {self.expression!r}: {name}() takes one per-object value "
                "(e.g. sum(Jet_pt))"
            )
        return Value(_reduce(name, args[0]))


def _reduce(name: str, value: Value) -> np.ndarray:
    counts = value.counts
    assert counts is not None
    data = value.data.astype(np.float64)
    n_events = len(counts)
    event_index = np.repeat(np.arange(n_events), counts)
    if name == "count":
        return np.bincount(event_index, weights=data.astype(bool), minlength=n_events)
    total = np.bincount(event_index, weights=data, minlength=n_events)
    if name == "sum":
        return total
    if name == "mean":
        return np.divide(total, counts, out=np.zeros(n_events), where=counts > 0)
    out = np.full(n_events, -np.inf if name == "max" else np.inf)
    (np.maximum if name == "max" else np.minimum).at(out, event_index, data)
    return np.where(counts > 0, out, 0.0)
