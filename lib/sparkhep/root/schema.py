"""Spark column types for ROOT branches and RNTuple fields, from the awkward form uproot reads.

Flat numbers and booleans map to the Spark type that holds every value: unsigned integers
widen (uint8 to smallint, uint16 to int, uint32 to bigint), and uint64 becomes bigint with
values of 2**63 and above rejected at read time, or ``decimal(20,0)`` when asked for
(``uint64_as_decimal``). Jagged (``Jet_pt[nJet]``, ``std::vector<float>``) and fixed-size
(``float[3]``) arrays become ``array<...>``, nested as deep as the branch is; ``char*`` and
``std::string`` become ``string``; ``Double32_t`` and ``Float16_t`` are read as double and
float. Records (the collections of an RNTuple) become ``struct<...>``, and values that may be
missing (an expression such as ``max(Jet_pt)`` over an empty list) are nulls. Anything else
(unsplit objects, unions, ``std::vector<Double32_t>``, the grouping branch of a split object,
whose members are columns of their own) has no column type and is reported as unsupported.

Files of one dataset may disagree on a branch's type; ``widen`` says when one Spark type can
hold the other's values exactly (int to bigint, float to double), so the column takes the
wider type.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
)

log = logging.getLogger(__name__)

PRIMITIVE_TYPES: dict[str, DataType] = {
    "bool": BooleanType(),
    "int8": ByteType(),
    "uint8": ShortType(),
    "int16": ShortType(),
    "uint16": IntegerType(),
    "int32": IntegerType(),
    "uint32": LongType(),
    "int64": LongType(),
    "uint64": LongType(),
    "float32": FloatType(),
    "float64": DoubleType(),
}
UINT64_DECIMAL = DecimalType(20, 0)
"""Holds every uint64 value exactly (2**64 - 1 has 20 digits)."""

_INTEGER_ORDER = (ByteType(), ShortType(), IntegerType(), LongType())
_FLOAT_ORDER = (FloatType(), DoubleType())


def spark_type_for_form(form: Any, *, uint64_as_decimal: bool = False) -> DataType | None:
    """The Spark type of values with the given awkward form.

    Args:
        form: an ``awkward.forms.Form``.
        uint64_as_decimal: give uint64 values ``decimal(20,0)`` instead of bigint.

    Returns:
        The Spark type, or None when the form has no column type here.
    """
    import awkward as ak

    forms = ak.forms
    array_parameter = form.parameters.get("__array__")
    if isinstance(form, forms.NumpyForm):
        result: DataType | None = PRIMITIVE_TYPES.get(form.primitive)
        if form.primitive == "uint64" and uint64_as_decimal:
            result = UINT64_DECIMAL
        if result is not None:
            for _ in form.inner_shape:
                result = ArrayType(result)
        return result
    if isinstance(form, (forms.ListOffsetForm, forms.ListForm, forms.RegularForm)):
        if array_parameter == "string":
            return StringType()
        if array_parameter == "bytestring":
            return BinaryType()
        content = spark_type_for_form(form.content, uint64_as_decimal=uint64_as_decimal)
        return None if content is None else ArrayType(content)
    options = (forms.UnmaskedForm, forms.ByteMaskedForm, forms.BitMaskedForm)
    if isinstance(form, (*options, forms.IndexedOptionForm, forms.IndexedForm)):
        return spark_type_for_form(form.content, uint64_as_decimal=uint64_as_decimal)
    if isinstance(form, forms.RecordForm) and not form.is_tuple and form.fields:
        fields = []
        for name, content in zip(form.fields, form.contents, strict=True):
            field_type = spark_type_for_form(content, uint64_as_decimal=uint64_as_decimal)
            if field_type is None:
                return None
            fields.append(StructField(name, field_type))
        return StructType(fields)
    return None


def spark_type_for_branch(branch: Any, *, uint64_as_decimal: bool = False) -> DataType | None:
    """The Spark type of a TBranch, or None when its type is not supported.

    Args:
        branch: an ``uproot.TBranch``.
        uint64_as_decimal: give uint64 values ``decimal(20,0)`` instead of bigint.

    Returns:
        The Spark type, or None.
    """
    form = awkward_form_of_branch(branch)
    return None if form is None else spark_type_for_form(form, uint64_as_decimal=uint64_as_decimal)


def awkward_form_of_branch(branch: Any) -> Any | None:
    """The awkward form uproot reads a TBranch as, or None when uproot cannot model it.

    A grouping branch (a split object such as ``hit``, whose members are the subbranches
    ``hit/energy``, ...) has a record form, but uproot refuses to read it directly: it has no
    form here, so that asking for it fails when the read is built rather than in every task.

    Args:
        branch: an ``uproot.TBranch``.

    Returns:
        The ``awkward.forms.Form``, or None.
    """
    import uproot

    try:
        interpretation = branch.interpretation
        unreadable = (
            uproot.interpretation.identify.UnknownInterpretation,
            uproot.interpretation.grouped.AsGrouped,
        )
        if isinstance(interpretation, unreadable):
            return None
        return interpretation.awkward_form(branch.file)
    except Exception as err:  # uproot raises many kinds for types it cannot model
        log.debug("branch %r (%s) has no awkward form: %s", branch.name, branch.typename, err)
        return None


def widen(first: DataType, other: DataType) -> DataType | None:
    """The type that holds the values of both, when one holds the other's exactly.

    Integers widen to a longer integer, float to double, element-wise inside arrays and
    field by field inside structs (same field names in the same order).

    Args:
        first: one column type.
        other: the other column type.

    Returns:
        The wider type (``first`` when they are equal), or None when neither holds the other.
    """
    if first == other:
        return first
    for order in (_INTEGER_ORDER, _FLOAT_ORDER):
        if first in order and other in order:
            return max(first, other, key=order.index)
    if isinstance(first, ArrayType) and isinstance(other, ArrayType):
        element = widen(first.elementType, other.elementType)
        return None if element is None else ArrayType(element)
    if isinstance(first, StructType) and isinstance(other, StructType):
        if first.fieldNames() != other.fieldNames():
            return None
        fields = []
        for mine, theirs in zip(first.fields, other.fields, strict=True):
            field_type = widen(mine.dataType, theirs.dataType)
            if field_type is None:
                return None
            fields.append(StructField(mine.name, field_type))
        return StructType(fields)
    return None
