"""Plain-text tables for terminals and logs (headless output, evaluation reports), and the
rule every table of ours follows when its width is short (the monitor's too).

A table cut at the terminal's edge hides its right-hand columns without saying so, and the
ones on the right are not the least important. So a table states a priority per column (0 is
kept longest); the widest set that fits is the columns of the best priorities that fit
together, still shown in their own order; mode names are shortened (`modes.short_name`) only
when that keeps a column the full names would lose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def text_table(
    header: list[str],
    rows: list[list[str]],
    *,
    width: int | None = None,
    priority: Sequence[int] | None = None,
) -> list[str]:
    """Lines of a table: the first column left-aligned, the others right-aligned, a rule
    under the header, every column as wide as its widest cell. With `width` and `priority`,
    only the columns that fit (`keep_columns`) are kept."""
    if width is not None and priority is not None:
        widths = column_widths(header, rows)
        keep = keep_columns([w + 2 for w in widths], priority, width + 2, gap=0)
        header = [header[i] for i in keep]
        rows = [[r[i] for i in keep] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


@dataclass(frozen=True)
class Fit:
    """Which columns to show (indices in display order) and whether names were shortened."""

    columns: tuple[int, ...]
    short_names: bool = False


def keep_columns(
    widths: Sequence[int], priority: Sequence[int], available: int, *, gap: int = 2
) -> tuple[int, ...]:
    """Indices of the columns shown, in display order: taken in priority order while the row
    (each column's width plus `gap` between or around columns) still fits in `available`.
    The column of priority 0 is always kept, even when it alone is too wide."""
    order = sorted(range(len(widths)), key=lambda i: (priority[i], i))
    kept: list[int] = []
    used = 0
    for i in order:
        need = widths[i] + gap
        if kept and used + need > available:
            continue  # a narrower column of lower priority may still fit
        kept.append(i)
        used += need
    return tuple(sorted(kept))


def column_widths(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]


def fit_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    priority: Sequence[int],
    available: int,
    *,
    short_rows: Sequence[Sequence[str]] | None = None,
    gap: int = 2,
) -> Fit:
    """The columns to keep. `short_rows` are the same rows with shortened mode names
    (`modes.short_name`); they are used only when the full names would leave out a column
    that the short ones keep."""
    full = keep_columns(column_widths(header, rows), priority, available, gap=gap)
    if len(full) == len(header) or short_rows is None:
        return Fit(full)
    short = keep_columns(column_widths(header, short_rows), priority, available, gap=gap)
    if len(short) > len(full):
        return Fit(short, short_names=True)
    return Fit(full)
