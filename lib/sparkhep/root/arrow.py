"""Awkward layouts (as uproot reads branches) to Arrow arrays of an exact Arrow type.

Spark 4 rejects record batches whose schema differs in any way from the declared one
(``DATA_SOURCE_RETURN_SCHEMA_MISMATCH``), while awkward's own Arrow export gives ``large_list``,
unsigned types, non-null fields and extension metadata. So arrays are built here straight from
the layout's buffers: offsets rebased, narrowed to int32 and checked never to decrease (Arrow
would read past the values), numeric content handed to Arrow
without a copy where the type already matches, unsigned integers widened, and uint64 checked to
fit a signed bigint (never a silent wrap) unless the column is ``decimal(20,0)``. Records become
struct arrays and missing values (option types) Arrow nulls. No Python loop runs over entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INT32_MAX = np.iinfo(np.int32).max

_WIDENED = {
    np.dtype(np.uint8): np.int16,
    np.dtype(np.uint16): np.int32,
    np.dtype(np.uint32): np.int64,
}


class UnsignedOverflowError(OverflowError):
    """A uint64 value does not fit the signed 64-bit column.

    Attributes:
        row: the row (of the array being converted) that holds the value.
        value: the value.
    """

    def __init__(self, row: int, value: int) -> None:
        super().__init__(f"row {row} holds {value}, which is 2**63 or more")
        self.row = row
        self.value = value


def layout_to_arrow(layout: Any, arrow_type: pa.DataType) -> pa.Array:
    """Convert an awkward layout to an Arrow array of exactly ``arrow_type``.

    Args:
        layout: an ``awkward.contents.Content`` (numbers, lists, strings, records, options).
        arrow_type: the Arrow type to produce (lists must be ``pa.list_``, 32-bit offsets).

    Returns:
        The Arrow array; nulls only where the layout has missing values.

    Raises:
        UnsignedOverflowError: a uint64 value is 2**63 or more (``row`` is a row of ``layout``).
        TypeError: the layout cannot become ``arrow_type``.
        ValueError: list offsets decrease (what uproot gives when it misreads a branch).
    """
    import awkward as ak

    contents = ak.contents
    if isinstance(layout, contents.IndexedArray):
        layout = layout.project()
    if isinstance(layout, contents.UnmaskedArray):
        layout = layout.content
    if isinstance(layout, (contents.IndexedOptionArray, contents.BitMaskedArray)):
        layout = layout.to_ByteMaskedArray(True)
    if isinstance(layout, contents.ByteMaskedArray):
        return _masked_to_arrow(layout, arrow_type)
    if isinstance(layout, contents.NumpyArray):
        return _numpy_to_arrow(np.asarray(layout.data), arrow_type)
    if isinstance(layout, (contents.ListArray, contents.RegularArray)):
        layout = layout.to_ListOffsetArray64(False)
    if isinstance(layout, contents.ListOffsetArray):
        return _list_to_arrow(layout, arrow_type)
    if isinstance(layout, contents.RecordArray) and pa.types.is_struct(arrow_type):
        return _record_to_arrow(layout, arrow_type)
    raise TypeError(f"expected numbers, lists or strings to store as {arrow_type}, got {layout}")


def _masked_to_arrow(layout: Any, arrow_type: pa.DataType) -> pa.Array:
    valid = np.asarray(layout.mask_as_bool(valid_when=True))
    values = layout_to_arrow(layout.content[: len(valid)], arrow_type)
    if valid.all():
        return values
    return pc.if_else(pa.array(valid), values, pa.scalar(None, type=arrow_type))


def _record_to_arrow(layout: Any, arrow_type: pa.StructType) -> pa.Array:
    children = []
    for field in arrow_type:
        if field.name not in layout.fields:
            raise TypeError(f"expected a record with field {field.name!r}, got {layout.fields}")
        content = layout.content(field.name)[: layout.length]
        children.append(layout_to_arrow(content, field.type))
    return pa.StructArray.from_arrays(children, fields=list(arrow_type))


def _list_to_arrow(layout: Any, arrow_type: pa.DataType) -> pa.Array:
    offsets = np.asarray(layout.offsets)
    first, last = int(offsets[0]), int(offsets[-1])
    if last - first > INT32_MAX:
        raise OverflowError(
            f"expected at most {INT32_MAX} list items in one record batch, got {last - first}; "
            f"read fewer entries per partition (option 'entry_step')"
        )
    content = layout.content
    if first != 0 or last != content.length:
        content = content[first:last]
    relative = (offsets - first).astype(np.int32)
    # Arrow does not check given offsets (it would read past the values): a misread must fail.
    decreasing = np.flatnonzero(relative[1:] < relative[:-1])
    if len(decreasing):
        row = int(decreasing[0])
        raise ValueError(
            f"expected non-decreasing list offsets, got {int(offsets[row])} then "
            f"{int(offsets[row + 1])} at row {row} of {layout.form.type}: the branch was misread"
        )
    if pa.types.is_string(arrow_type) or pa.types.is_binary(arrow_type):
        chars = np.ascontiguousarray(np.asarray(content.data))
        array_class = pa.StringArray if pa.types.is_string(arrow_type) else pa.BinaryArray
        return array_class.from_buffers(
            len(relative) - 1, pa.py_buffer(relative), pa.py_buffer(chars)
        )
    if not pa.types.is_list(arrow_type):
        raise TypeError(f"expected a value to store as {arrow_type}, got a list: {layout.form}")
    try:
        values = layout_to_arrow(content, arrow_type.value_type)
    except UnsignedOverflowError as err:
        row = int(np.searchsorted(relative, err.row, side="right")) - 1
        raise UnsignedOverflowError(row, err.value) from None
    return pa.ListArray.from_arrays(pa.array(relative), values, type=arrow_type)


def _numpy_to_arrow(data: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    if data.ndim > 1:
        if not pa.types.is_list(arrow_type):
            raise TypeError(f"expected values to store as {arrow_type}, got shape {data.shape}")
        rows, size = data.shape[0], data.shape[1]
        try:
            values = _numpy_to_arrow(
                data.reshape(rows * size, *data.shape[2:]), arrow_type.value_type
            )
        except UnsignedOverflowError as err:
            raise UnsignedOverflowError(err.row // size, err.value) from None
        offsets = pa.array(np.arange(0, (rows + 1) * size, size, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values, type=arrow_type)
    if data.dtype.byteorder not in "=|":
        data = data.astype(data.dtype.newbyteorder("="))
    data = np.ascontiguousarray(data)
    if pa.types.is_decimal(arrow_type):
        return pa.array(data).cast(arrow_type)
    if data.dtype == np.uint64:
        signed = data.view(np.int64)
        if len(signed) and signed.min() < 0:
            row = int(np.argmax(signed < 0))
            raise UnsignedOverflowError(row, int(data[row]))
        data = signed
    elif data.dtype in _WIDENED:
        data = data.astype(_WIDENED[data.dtype])
    array = pa.array(data)
    if array.type != arrow_type:
        array = array.cast(arrow_type)
    return array
