"""How error and warning messages show a list: its first few items, and how many there are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["SHOWN", "preview"]

SHOWN = 5
"""How many items a message shows before it gives the count instead."""


def preview(items: Sequence[Any], limit: int = SHOWN) -> str:
    """The first ``limit`` items of ``items`` for a message, with the total when some are left out.

    Args:
        items: The items (sensor ids, timestamps, row numbers, ...); each is shown with ``repr``.
        limit: How many to show (default 5).

    Returns:
        ``"'a', 'b', 'c'"``, or ``"'a', 'b', ... (12 in all)"`` when ``items`` holds more than ``limit``.

    Example:
        >>> preview(["767541", "767542"])
        "'767541', '767542'"
        >>> preview(list(range(8)), limit=3)
        '0, 1, 2, ... (8 in all)'
    """
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"
