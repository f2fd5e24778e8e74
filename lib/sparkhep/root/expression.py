"""Expressions over branches for the ``cut`` and ``aliases`` options of the ``root`` source.

An expression is Python syntax over branch names, evaluated column-wise on the awkward arrays
uproot reads (numpy ufuncs broadcast through jagged arrays), never with ``eval``: only the
constructs below are accepted, and an expression is checked when the option is parsed.

- numbers, ``True``, ``False``, ``pi``; branch names;
- arithmetic ``+ - * / // % **``, comparisons (also chained, ``0 < x < 1``), ``& | ~ ^`` and
  ``and``/``or``/``not`` (element-wise);
- functions ``abs sqrt exp log log10 sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh
  arcsinh arccosh arctanh hypot minimum maximum where isnan isfinite``;
- per-entry reductions of a jagged branch: ``num`` (length), ``sum``, ``any``, ``all``, and
  ``max``/``min`` (null for an empty list).

A ``cut`` must give one boolean per entry (``nJet >= 6``, ``any(Jet_pt > 100)``); a null
(``max`` of an empty list) does not pass.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_ELEMENTWISE = (
    *("abs", "sqrt", "exp", "log", "log10", "sin", "cos", "tan", "arcsin", "arccos", "arctan"),
    *("arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "hypot", "minimum"),
    *("maximum", "where", "isnan", "isfinite"),
)
_REDUCERS = ("num", "sum", "any", "all", "max", "min")
FUNCTIONS = (*_ELEMENTWISE, *_REDUCERS)
CONSTANTS = {"pi": math.pi, "True": True, "False": False}

_BINARY_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
    ast.BitAnd: lambda a, b: a & b,
    ast.BitOr: lambda a, b: a | b,
    ast.BitXor: lambda a, b: a ^ b,
}
_COMPARISONS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Expression:
    """A parsed expression over branches.

    Attributes:
        text: the expression as written.
        names: the branch names it reads.
    """

    text: str
    names: tuple[str, ...]
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, arrays: Mapping[str, Any]) -> Any:
        """Evaluate over arrays of the branches in ``names``.

        Args:
            arrays: branch name → awkward array (all of one length).

        Returns:
            An awkward array (or a scalar when the expression reads no branch).
        """
        return _evaluate(self._tree.body, arrays)


def parse_expression(text: str, *, option: str) -> Expression:
    """Parse and check an expression.

    Args:
        text: the expression.
        option: the option it came from, for error messages (``"cut"``, ``"aliases"``).

    Returns:
        The expression.

    Raises:
        ValueError: the text is not an expression of the accepted form.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(
            f"option {option!r}: expected an expression over branch names such as "
            f"'nJet >= 6 and MET_pt > 50', got {text!r} ({err.msg})"
        ) from None
    names: list[str] = []
    for node in ast.walk(tree):
        problem = _check_node(node)
        if problem:
            raise ValueError(f"option {option!r}: in {text!r}, {problem}")
        if isinstance(node, ast.Name) and node.id not in CONSTANTS and node.id not in FUNCTIONS:
            names.append(node.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in FUNCTIONS and not _is_called(tree, node):
            raise ValueError(f"option {option!r}: in {text!r}, {node.id!r} is a function: call it")
    return Expression(text=text.strip(), names=tuple(dict.fromkeys(names)), _tree=tree)


def _is_called(tree: ast.AST, name: ast.Name) -> bool:
    return any(isinstance(node, ast.Call) and node.func is name for node in ast.walk(tree))


def _check_node(node: ast.AST) -> str | None:
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.Call,
        ast.Name,
        ast.Constant,
        ast.Load,
        ast.operator,
        ast.unaryop,
        ast.boolop,
        ast.cmpop,
    )
    if not isinstance(node, allowed):
        return (
            f"{type(node).__name__} is not allowed; expected branch names, numbers, operators "
            f"and function calls"
        )
    if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY_OPERATORS:
        return f"operator {type(node.op).__name__} is not allowed"
    if isinstance(node, ast.Compare) and any(type(op) not in _COMPARISONS for op in node.ops):
        return "only ==, !=, <, <=, >, >= comparisons are allowed"
    if isinstance(node, ast.Constant) and (
        isinstance(node.value, str | bytes) or node.value is None
    ):
        return f"constant {node.value!r} is not allowed; expected a number"
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = ast.unparse(node.func)
            return f"unknown function {called!r}; expected one of {', '.join(FUNCTIONS)}"
        if node.keywords:
            return f"{node.func.id}() takes no keyword arguments"
        if node.func.id in _REDUCERS and len(node.args) != 1:
            return f"{node.func.id}() takes one jagged branch or expression"
    return None


def _evaluate(node: ast.AST, arrays: Mapping[str, Any]) -> Any:
    import awkward as ak
    import numpy as np

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        return arrays[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY_OPERATORS[type(node.op)](
            _evaluate(node.left, arrays), _evaluate(node.right, arrays)
        )
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, arrays)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return np.logical_not(operand)
        return ~operand
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        values = [_evaluate(value, arrays) for value in node.values]
        result = values[0]
        for value in values[1:]:
            result = combine(result, value)
        return result
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, arrays)
        result = None
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, arrays)
            step = _COMPARISONS[type(op)](left, right)
            result = step if result is None else np.logical_and(result, step)
            left = right
        return result
    if isinstance(node, ast.Call):
        name = node.func.id  # type: ignore[attr-defined]
        args = [_evaluate(arg, arrays) for arg in node.args]
        if name == "num":
            return ak.num(args[0], axis=1)
        if name in ("sum", "any", "all"):
            return getattr(ak, name)(args[0], axis=1)
        if name in ("max", "min"):
            return getattr(ak, name)(args[0], axis=1, mask_identity=True)
        if name == "where":
            return ak.where(*args)
        function = np.absolute if name == "abs" else getattr(np, name)
        return function(*args)
    raise TypeError(f"cannot evaluate {ast.dump(node)}")
