"""The row-update format the window stream reads: what one aggregation changelog record
did to a window row, decoded by the window's kind (the store's key layout stays
core.schema's and the kinds')."""

from collections.abc import Iterable

from core.windows import RowChange, Window


def row_update(key: bytes | None, value: bytes | None,
               windows: Iterable[Window]) -> RowChange | None:
    """The row of one of `windows` a changelog record set or deleted; None for a commit
    marker, any other key of the store, another window's row, or a delete its kind does
    not report."""
    if key is None:
        return None
    text = key.decode()
    for window in windows:
        change = window.change(text, None if value is None else value.decode())
        if change is not None:
            return change
    return None
