"""Terminal tables that fit the width without cutting what identifies a thing.

Every table of the CLI is declared as columns with two properties: ``key``
columns (addresses, MACs, namespaces, devices, flows) are never shortened or
wrapped; ``drop`` orders the columns that may be left out when even wrapping
the free-text columns cannot make the table fit. rich's own fallback cuts every
column with "…", which is how ``198.…`` and ``00:0…`` reached the user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

NARROW_COLUMNS = 120
"""Below this width tables are fitted (wrapped, then columns dropped); --wide skips it."""


@dataclass(frozen=True, kw_only=True)
class Col:
    """One column of a fitted table."""

    header: str
    justify: Literal["left", "right"] = "left"
    key: bool = False
    """An identity (address, MAC, namespace, device, flow): shown whole on one line."""
    drop: int = 0
    """0: always shown. Otherwise the column may be left out when the table does
    not fit; the highest ``drop`` goes first."""


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _measure(console, cols: Sequence[Col], rows: Sequence[Sequence[Any]]) -> tuple[list[int], list[int]]:
    """(natural, least) width of each column's text: a key column's least is its
    natural width; any other column may wrap between words, never inside one (a
    number cut in two reads as two numbers), and never in its header."""
    from rich.measure import Measurement

    natural, least = [], []
    for i, c in enumerate(cols):
        sizes = [Measurement.get(console, console.options, _cell(r[i])) for r in rows]
        head = Measurement.get(console, console.options, c.header)
        nat = max([m.maximum for m in sizes] + [head.maximum])
        natural.append(nat)
        least.append(nat if c.key else max([m.minimum for m in sizes] + [head.maximum]))
    return natural, least


def _overhead(n_columns: int, kwargs: dict) -> int:
    """Borders and padding of a table of n columns with these Table arguments."""
    from rich.table import Table

    probe = Table(**{k: v for k, v in kwargs.items() if k in ("box", "pad_edge", "padding", "show_edge",
                                                                  "collapse_padding")})
    for _ in range(n_columns):
        probe.add_column()
    return probe._extra_width + sum(probe._get_padding_width(i) for i in range(n_columns))  # noqa: SLF001


def _shrink(natural: list[int], least: list[int], room: int) -> list[int]:
    """Widths within ``room``: take from the column with the most slack first."""
    widths = list(natural)
    excess = sum(widths) - room
    while excess > 0:
        i = max(range(len(widths)), key=lambda k: widths[k] - least[k])
        if widths[i] <= least[i]:
            break
        widths[i] -= 1
        excess -= 1
    return widths


def build(console, width: int, cols: Sequence[Col], rows: Sequence[Sequence[Any]], table_kwargs: dict,
          styles: Sequence[str | None] = ()):
    """The rich Table of ``rows`` for ``width`` columns: free-text columns wrap
    between words, then the most droppable columns are left out (named in the
    caption; ``--wide`` shows them); key columns are always whole."""
    from rich import box
    from rich.table import Table

    if width < NARROW_COLUMNS and "box" not in table_kwargs:
        # No vertical rules: a column of text more per three columns of table.
        table_kwargs = {**table_kwargs, "box": box.SIMPLE_HEAD, "pad_edge": False}
    natural, least = _measure(console, cols, rows)
    keep = list(range(len(cols)))
    droppable = sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: -cols[i].drop)
    dropped: list[str] = []
    while droppable and sum(least[i] for i in keep) + _overhead(len(keep), table_kwargs) > width:
        i = droppable.pop(0)
        keep.remove(i)
        dropped.append(cols[i].header)
    room = width - _overhead(len(keep), table_kwargs)
    widths = _shrink([natural[i] for i in keep], [least[i] for i in keep], room)
    table = Table(**table_kwargs)
    for i, w in zip(keep, widths):
        c = cols[i]
        # Fixed widths: rich's own fallback would cut every column with "…".
        table.add_column(c.header, justify=c.justify, width=w, no_wrap=c.key, overflow="fold")
    for n, r in enumerate(rows):
        table.add_row(*(_cell(r[i]) for i in keep), style=styles[n] if n < len(styles) else None)
    if dropped:
        note = f"not shown at {width} columns: {', '.join(dropped)} (--wide shows them)"
        table.caption = f"{table.caption}\n{note}" if table.caption else note
        table.caption_justify = "left"
    return table


class FittedTable:
    """A table laid out when it is printed, for the width it is printed at (a
    console, a live view, a pipe with $COLUMNS), so builders need no console."""

    def __init__(self, cols: Sequence[Col], rows: Iterable[Sequence[Any]], table_kwargs: dict,
                 styles: Sequence[str | None] = ()) -> None:
        self.cols = tuple(cols)
        self.rows = [tuple(r) for r in rows]
        self.table_kwargs = table_kwargs
        self.styles = tuple(styles)

    def table(self, console, width: int | None = None):
        return build(console, console.width if width is None else width, self.cols, self.rows, self.table_kwargs,
                     self.styles)

    def __rich_console__(self, console, options):
        yield self.table(console, options.max_width)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement.get(console, options, self.table(console, options.max_width))


def fitted(cols: Sequence[Col], rows: Iterable[Sequence[Any]], *, styles: Sequence[str | None] = (),
           **table_kwargs: Any) -> FittedTable:
    """``rows`` under ``cols``, fitted to the width it is printed at (see ``build``);
    ``styles`` are per-row rich styles; ``table_kwargs`` go to rich's Table (title, caption, box, ...)."""
    return FittedTable(cols, rows, table_kwargs, styles)
