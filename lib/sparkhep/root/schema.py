"""Spark column types for ROOT branches, derived from the awkward form uproot reads them as.

Flat numbers and booleans map to the Spark type that holds every value: unsigned integers
widen (uint8 to smallint, uint16 to int, uint32 to bigint), and uint64 becomes bigint with
values of 2**63 and above rejected at read time. Jagged (``Jet_pt[nJet]``,
``std::vector<float>``) and fixed-size (``float[3]``) arrays become ``array<...>``, nested as
deep as the branch is; ``char*`` and ``std::string`` become ``string``. Anything else (classes,
records, unsplit objects) has no column type and is reported as unsupported.
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
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
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


def spark_type_for_form(form: Any) -> DataType | None:
    """The Spark type of values with the given awkward form.

    Args:
        form: an ``awkward.forms.Form``.

    Returns:
        The Spark type, or None when the form has no column type here.
    """
    import awkward as ak

    array_parameter = form.parameters.get("__array__")
    if isinstance(form, ak.forms.NumpyForm):
        result: DataType | None = PRIMITIVE_TYPES.get(form.primitive)
        if result is not None:
            for _ in form.inner_shape:
                result = ArrayType(result)
        return result
    if isinstance(form, (ak.forms.ListOffsetForm, ak.forms.ListForm, ak.forms.RegularForm)):
        if array_parameter == "string":
            return StringType()
        if array_parameter == "bytestring":
            return BinaryType()
        content = spark_type_for_form(form.content)
        return None if content is None else ArrayType(content)
    return None


def spark_type_for_branch(branch: Any) -> DataType | None:
    """The Spark type of a TBranch, or None when its type is not supported.

    Args:
        branch: an ``uproot.TBranch``.

    Returns:
        The Spark type, or None.
    """
    import uproot

    try:
        interpretation = branch.interpretation
        if isinstance(interpretation, uproot.interpretation.identify.UnknownInterpretation):
            return None
        form = interpretation.awkward_form(branch.file)
    except Exception as err:  # uproot raises many kinds for types it cannot model
        log.debug("branch %r (%s) has no awkward form: %s", branch.name, branch.typename, err)
        return None
    return spark_type_for_form(form)
