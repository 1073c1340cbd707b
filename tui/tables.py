"""Live tables: a DataTable kept in step with keyed rows by applying only what changed.

A refresh hands `KeyedTable.apply` every row as (key, signature, source). Rows whose
signature is unchanged cost a dict lookup; changed rows are rendered (from shared, cached
cells) and only their changed cells written; rows are added and removed in one pass and
renumbered once. The sort order and the row under the cursor survive every batch. `apply`
is `plan` (the work above, touching no widget, so a worker thread may do it) then `commit`
(the writes, on the screen's thread). Drawing renders each distinct cell once rather than
every visible cell after every batch. Also the small formatting helpers the tabs share
(ages, short ids, text progress bars).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Generic, Self, TypeVar

from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.geometry import Region, Size, Spacing
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, ColumnKey, Row, RowKey

S = TypeVar("S")

BAR_WIDTH = 10


class Cell(Text):
    """A table cell: styled text plus the value it sorts by (numbers sort as numbers)."""

    __slots__ = ("order", "sort")

    def __init__(self, plain: str = "", style: str = "", sort: Any = None) -> None:
        super().__init__(plain, end="", no_wrap=True, overflow="ellipsis")
        if style:
            self.stylize(style)
        self.sort = plain.casefold() if sort is None else sort
        self.order = sort_key(self.sort)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cell):
            return NotImplemented
        return self.plain == other.plain and self.spans == other.spans and self.sort == other.sort

    __hash__ = None  # type: ignore[assignment]


@functools.lru_cache(maxsize=1 << 16)
def cell(plain: str, style: str = "", sort: Any = None) -> Cell:
    """A cell, shared by every row that shows the same thing: refreshing thousands of rows
    then mostly reuses cells instead of building them (and unchanged cells compare by
    identity)."""
    return Cell(plain, style, sort)


def sort_key(value: Any) -> tuple[int, Any]:
    """Orders sort values: numbers as numbers, then text, with empty values (None) last."""
    if value is None:
        return (1, 0)
    if isinstance(value, int | float):
        return (0, (0, value))
    return (0, (1, str(value)))


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None


@dataclass(frozen=True, slots=True)
class _Frame:
    """What every line of one frame shares, looked up once per frame instead of per line
    (each lookup walks the widget's ancestors' styles)."""

    base: Style
    rows: tuple[Style, Style]  # even, odd (zebra stripes)
    widths: tuple[int, ...]
    width: int


@dataclass(slots=True)
class TableBatch(Generic[S]):
    """One refresh of a `KeyedTable`: worked out by `plan` from the rows alone, shown by
    `commit`. Holds the table's next signatures, cells, row keys and order; the changes to
    write; and the rows themselves, to plan again if the table changed in between."""

    generation: int
    rows: list[tuple[str, Hashable, S]]
    render: Callable[[S], Sequence[Cell]]
    signatures: dict[str, Hashable]
    cells: dict[str, tuple[Cell, ...]]
    row_keys: dict[str, RowKey]
    order: list[str]
    order_keys: dict[str, tuple[int, Any]]
    locations: TwoWayDict[RowKey, int] | None = None
    """Row positions, when rows moved."""
    changed: list[tuple[str, list[tuple[int, Cell]]]] = field(default_factory=list)
    """(key, [(column index, new cell)]) for rows that look different."""
    added: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    sorted: bool = False


@dataclass(slots=True)
class ApplyStats:
    """What one batch did, for tests and the benchmark."""

    added: int = 0
    updated_rows: int = 0
    updated_cells: int = 0
    removed: int = 0
    sorted: bool = False


class KeyedTable(DataTable, Generic[S]):
    """A row-cursor DataTable whose rows are named by keys and refreshed in batches.

    DataTable's public row methods each renumber or re-walk every row (`remove_row`,
    `add_row`'s cursor check, `sort`), which at thousands of rows costs milliseconds per
    call. `apply` therefore changes the table's row store in one pass and renumbers once;
    it touches DataTable's private `_data`, `_row_locations`, `_new_rows`, `_updated_cells`,
    `_update_count` and `_require_update_dimensions`, exactly as `add_row`, `update_cell` and
    `sort` do (Textual 8; the tests of this module pin the behaviour).

    Drawing overrides DataTable's private `_render_line_in_row`, `_get_offsets`,
    `_total_row_height`, `ordered_rows`, `_get_row_region`, `_get_fixed_offset`,
    `_update_dimensions` and `_clear_caches` (rows are one line high and columns mostly
    fixed, so little needs measuring); a test draws a KeyedTable and a plain DataTable side
    by side and compares every segment.
    """

    class Sorted(Message):
        """The user changed the sort: `column` ascending unless `reverse`."""

        def __init__(self, table: KeyedTable[Any], column: str, reverse: bool) -> None:
            super().__init__()
            self.table = table
            self.column = column
            self.reverse = reverse

    def __init__(
        self,
        columns: Sequence[Column],
        render: Callable[[S], Sequence[Cell]],
        *,
        sort_column: str | None = None,
        reverse: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        # Before DataTable's __init__, whose watchers clear caches and count rows.
        self._signatures: dict[str, Hashable] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._row_keys: dict[str, RowKey] = {}
        self._order: list[str] = []
        self._order_keys: dict[str, tuple[int, Any]] = {}
        """Each row's sort key in the sort column, kept as rows change so sorting is cheap."""
        self._generation = 0
        """Counts replacements of the five above (never changed in place, so `plan` may read
        them from another thread)."""
        self._frame: _Frame | None = None
        self._drawn_cells: dict[tuple[Any, ...], tuple[Cell, list[Segment]]] = {}
        """A cell's segments by (cell, width, style before, style after), without the row
        and column that DataTable's mouse handling reads from each segment."""
        self._plain_cells: dict[tuple[int, int], tuple[Cell, list[Segment]]] = {}
        self._cell_meta: dict[tuple[int, int], Style] = {}
        self._placed: dict[tuple[Style, Style], Style] = {}
        self._drawn_header: tuple[tuple[Any, ...], Any] | None = None
        super().__init__(cursor_type="row", zebra_stripes=True, id=id, classes=classes)
        self.column_specs = tuple(columns)
        self.render_row = render
        self.sort_column = sort_column
        self.sort_reverse = reverse
        self._column_keys = [c.key for c in self.column_specs]
        self._column_objects = [ColumnKey(c.key) for c in self.column_specs]
        for column in self.column_specs:
            self.add_column(column.label, key=column.key, width=column.width)

    # -- batches -------------------------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def apply(
        self,
        rows: Iterable[tuple[str, Hashable, S]],
        render: Callable[[S], Sequence[Cell]] | None = None,
    ) -> ApplyStats:
        """Make the table show exactly `rows` (key, signature, source), changing only what
        differs from the last batch; the sort order and the row under the cursor survive."""
        return self.commit(self.plan(rows, render))

    def plan(
        self,
        rows: Iterable[tuple[str, Hashable, S]],
        render: Callable[[S], Sequence[Cell]] | None = None,
    ) -> TableBatch[S]:
        """Work out what showing `rows` changes, touching no widget: a worker thread may do
        this while the screen is drawn. Rows whose signature is unchanged cost a dict
        lookup; the others are rendered (with `render`, else the table's own) and compared
        cell by cell. Reads only state that `commit`, `sort_by` and `clear` replace and never
        change in place."""
        generation = self._generation  # first: whatever is read after is as new or newer
        before, cells_before = self._signatures, self._cells
        row_keys, order_before, order_keys_before = self._row_keys, self._order, self._order_keys
        sort_index = (
            self._column_keys.index(self.sort_column)
            if self.sort_column in self._column_keys
            else None
        )
        reverse = self.sort_reverse
        render = self.render_row if render is None else render
        rows = list(rows)
        signatures: dict[str, Hashable] = {}
        renewed: list[tuple[str, tuple[Cell, ...]]] = []
        added: list[tuple[str, tuple[Cell, ...]]] = []
        for key, signature, source in rows:
            if key in signatures:
                continue  # of two rows with one key, the first is shown
            signatures[key] = signature
            old = before.get(key, _MISSING)
            if old == signature:
                continue
            (added if old is _MISSING else renewed).append((key, tuple(render(source))))
        gone = (
            [key for key in before if key not in signatures]
            if len(signatures) - len(added) != len(before)
            else []
        )
        batch = TableBatch(
            generation=generation,
            rows=rows,
            render=render,
            signatures=before,
            cells=cells_before,
            row_keys=row_keys,
            order=order_before,
            order_keys=order_keys_before,
        )
        if not (renewed or added or gone):
            return batch

        batch.signatures = signatures
        cells = batch.cells = dict(cells_before)
        order_keys = batch.order_keys = dict(order_keys_before)
        resort = bool(added)
        for key in gone:
            del cells[key]
            order_keys.pop(key, None)
        for key, new in renewed:
            changes = []
            for index, (old_cell, new_cell) in enumerate(zip(cells[key], new, strict=False)):
                if old_cell is new_cell or old_cell == new_cell:
                    continue
                changes.append((index, new_cell))
                if index == sort_index:
                    order_keys[key] = new_cell.order
                    resort = True
            cells[key] = new
            if changes:
                batch.changed.append((key, changes))
        if added or gone:
            row_keys = batch.row_keys = dict(row_keys)
            for key in gone:
                del row_keys[key]
            for key, new in added:
                row_keys[key] = RowKey(key)
                cells[key] = new
                if sort_index is not None:
                    order_keys[key] = new[sort_index].order
        batch.added = [key for key, _ in added]
        batch.gone = gone
        order = order_before
        if gone:
            gone_set = set(gone)
            order = [key for key in order if key not in gone_set]
        if added:
            order = order + batch.added
        if resort and sort_index is not None:
            order = sorted(order, key=order_keys.__getitem__, reverse=reverse)
            batch.sorted = True
        if order is not order_before:
            batch.order = order
            batch.locations = TwoWayDict({row_keys[key]: index for index, key in enumerate(order)})
        return batch

    def commit(self, batch: TableBatch[S]) -> ApplyStats:
        """Show what `plan` worked out: only the cells that changed are written, and rows
        are added and removed in one pass. A batch planned before another batch (or a sort,
        or a clear) was committed is planned again from its rows."""
        if batch.generation != self._generation:
            batch = self.plan(batch.rows, batch.render)
        stats = ApplyStats()
        if batch.signatures is self._signatures:
            return stats  # nothing changed
        cursor_key = self.cursor_key
        was_empty = not self._order
        data, rows = self._data, self.rows
        for key in batch.gone:
            row_key = self._row_keys[key]
            del data[row_key], rows[row_key]
            self._new_rows.discard(row_key)
        widen = False
        for key, changes in batch.changed:
            row_key = batch.row_keys[key]
            row_data = data[row_key]
            for index, new_cell in changes:
                column_key = self._column_objects[index]
                row_data[column_key] = new_cell
                column = self.columns[column_key]
                if column.auto_width and new_cell.cell_len > column.content_width:
                    self._updated_cells.add(CellKey(row_key, column_key))
                    widen = True
            stats.updated_cells += len(changes)
        for key in batch.added:
            row_key = batch.row_keys[key]
            data[row_key] = dict(zip(self._column_objects, batch.cells[key], strict=True))
            rows[row_key] = Row(row_key, 1)
            self._new_rows.add(row_key)
        self._signatures, self._cells, self._row_keys = (
            batch.signatures,
            batch.cells,
            batch.row_keys,
        )
        self._order, self._order_keys = batch.order, batch.order_keys
        self._generation += 1
        stats.updated_rows = len(batch.changed)
        stats.added, stats.removed, stats.sorted = len(batch.added), len(batch.gone), batch.sorted
        if not (batch.changed or batch.added or batch.gone):
            return stats  # new signatures, same cells
        if batch.locations is not None:
            self._row_locations = batch.locations
        self._update_count += 1
        if batch.added or batch.gone or widen:
            self._require_update_dimensions = True
        self.refresh()
        self.check_idle()
        self._restore_cursor(cursor_key, was_empty)
        return stats

    def _sort_order(self, index: int) -> None:
        self._order = sorted(
            self._order, key=self._order_keys.__getitem__, reverse=self.sort_reverse
        )

    def _renumber(self) -> None:
        row_keys = self._row_keys
        self._row_locations = TwoWayDict(
            {row_keys[key]: index for index, key in enumerate(self._order)}
        )
        self._update_count += 1

    def _restore_cursor(self, cursor_key: str | None, was_empty: bool) -> None:
        if cursor_key is not None and cursor_key in self._row_keys:
            index = self._row_locations.get(self._row_keys[cursor_key])
            if index is not None and index != self.cursor_row:
                # Sized now rather than when idle: DataTable scrolls to the cursor after the
                # next frame while new rows are not measured, which draws the table twice.
                self._update_dimensions_now()
                self.move_cursor(row=index, animate=False, scroll=False)
            return
        # The row under the cursor went away (or there was none): stay in range.
        self.cursor_coordinate = self.cursor_coordinate
        self.hover_coordinate = self.hover_coordinate
        if (was_empty or cursor_key is not None) and self._order:
            row = min(self.cursor_row, len(self._order) - 1)
            self.post_message(DataTable.RowHighlighted(self, row, self._row_keys[self._order[row]]))

    def _update_dimensions_now(self) -> None:
        """DataTable's idle work (new rows measured, columns widened, the virtual size set)."""
        if self._updated_cells:
            updated_cells = self._updated_cells.copy()
            self._updated_cells.clear()
            self._update_column_widths(updated_cells)
        if self._require_update_dimensions:
            self._require_update_dimensions = False
            new_rows = self._new_rows.copy()
            self._new_rows.clear()
            self._update_dimensions(new_rows)

    def clear(self, columns: bool = False) -> Self:
        self._signatures, self._cells, self._row_keys = {}, {}, {}
        self._order, self._order_keys = [], {}
        self._generation += 1
        return super().clear(columns)

    # -- drawing -----------------------------------------------------------------------------

    # DataTable renders a line's cells through Rich again whenever any row changed (its caches
    # are keyed by a counter that every change bumps, and by row position, which moves
    # whenever a row is added above). Here a cell is rendered once for what it shows and how
    # (cells are shared, so a `done` or `running` cell serves every row that shows it) and
    # only the row and column are added per frame. The header and any table with row
    # labels, fixed rows or columns, or a non-row cursor take DataTable's own path.

    def render_lines(self, crop: Region) -> list[Strip]:
        self._frame = None
        if not (self.fixed_rows or self.fixed_columns or self._should_render_row_labels):
            widths = tuple(column.get_render_width(self) for column in self.ordered_columns)
            self._frame = _Frame(
                self.rich_style,
                (
                    self.get_component_styles("datatable--even-row").rich_style,
                    self.get_component_styles("datatable--odd-row").rich_style,
                ),
                widths,
                self.size.width,
            )
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        frame = self._frame
        if frame is None:
            return super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        header_height = self.header_height if self.show_header else 0
        index = y - header_height + scroll_y
        if y < header_height or scroll_x or sum(frame.widths) > frame.width:
            # The header, or a table wider than the widget: cropped as DataTable does.
            y = y if y < header_height else y + scroll_y
            return self._render_line(y, scroll_x, scroll_x + frame.width, frame.base)
        if index >= len(self._order):
            return Strip.blank(frame.width, frame.base)
        row_key = self._row_keys[self._order[index]]
        _, cells = self._render_line_in_row(
            row_key, 0, frame.base, self.cursor_coordinate, self.hover_coordinate
        )
        # Exactly the widget's width, and already as simple as DataTable makes it: cells are
        # joined within, and neighbours differ by the column they name.
        return Strip(list(chain.from_iterable(cells)), frame.width)

    def _render_line_in_row(
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Any,
        hover_location: Any,
    ) -> tuple[list[list[Segment]], list[list[Segment]]]:
        frame = self._frame
        if row_key is self._header_row_key and frame is not None:
            # The header changes with the columns' labels and widths only (a new label
            # clears the caches), not with every batch of rows.
            key = (
                line_no,
                base_style,
                cursor_location.row == -1,
                hover_location.row == -1,
                frame.widths,
                frame.width,
                self.show_cursor,
                self._show_hover_cursor,
                self._pseudo_class_state,
            )
            if self._drawn_header is None or self._drawn_header[0] != key:
                drawn_header = super()._render_line_in_row(
                    row_key, line_no, base_style, cursor_location, hover_location
                )
                self._drawn_header = (key, drawn_header)
            return self._drawn_header[1]
        cells = self._cells.get(row_key.value) if isinstance(row_key.value, str) else None
        row_index = self._row_locations.get(row_key)
        if frame is None or cells is None or row_index is None or self.cursor_type != "row":
            return super()._render_line_in_row(
                row_key, line_no, base_style, cursor_location, hover_location
            )
        row_style = frame.rows[row_index % 2] if self.zebra_stripes else base_style
        cursor = cursor_location.row == row_index
        hover = hover_location.row == row_index
        show_cursor, show_hover = self.show_cursor, self._show_hover_cursor
        component, post = self._get_styles_to_render_cell(
            False,
            False,
            False,
            hover,
            cursor,
            show_cursor,
            show_hover,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        pre = row_style + component
        drawn, meta = self._drawn_cells, self._cell_meta
        placed = self._placed_style
        line: list[list[Segment]] = []
        for column_index, (value, width) in enumerate(zip(cells, frame.widths, strict=False)):
            key = (id(value), width, pre, post)
            hit = drawn.get(key)
            if hit is None or hit[0] is not value:
                hit = (value, _styled(self._plain_cell(value, width), pre, post))
                if len(drawn) >= _DRAWN_CELLS_MAX:
                    drawn.clear()
                drawn[key] = hit
            where = meta.get((row_index, column_index))
            if where is None:
                if len(meta) >= _DRAWN_CELLS_MAX:
                    meta.clear()
                where = meta[row_index, column_index] = Style.from_meta(
                    {"row": row_index, "column": column_index}
                )
            line.append([Segment(text, placed(style, where)) for text, style, _ in hit[1]])
        # The rest of the line, past the last column, in the row's style.
        extend = self._get_styles_to_render_cell(
            False, False, False, hover, cursor, show_cursor, show_hover, False, False
        )[0]
        beyond = meta.get((row_index, -1))
        if beyond is None:
            beyond = meta[row_index, -1] = Style.from_meta(
                {"row": row_index, "column": 0, "out_of_bounds": True}
            )
        remaining = max(0, frame.width - sum(frame.widths) - self._row_label_column_width)
        line.append([Segment(" " * remaining, placed(row_style + extend, beyond))])
        return [], line

    def _placed_style(self, style: Style, where: Style) -> Style:
        """`style` with a cell's row and column added (Rich's own cache of sums is too small
        for a screenful of cells)."""
        placed = self._placed.get((style, where))
        if placed is None:
            if len(self._placed) >= _DRAWN_CELLS_MAX:
                self._placed.clear()
            placed = self._placed[style, where] = style + where
        return placed

    # Every row is one line high, so a line's row is found by position in `_order`, and a
    # row's place from its index, instead of through DataTable's list of every line or
    # row, rebuilt after every change.

    def _get_offsets(self, y: int) -> tuple[RowKey, int]:
        if self.show_header:
            if y < self.header_height:
                return self._header_row_key, y
            y -= self.header_height
        if not 0 <= y < len(self._order):
            raise LookupError(f"Y coord {y!r} is greater than total height")
        return self._row_keys[self._order[y]], 0

    @property
    def _total_row_height(self) -> int:
        return len(self._order)

    def _get_row_region(self, row_index: int) -> Region:
        if not self.is_valid_row_index(row_index):
            return Region(0, 0, 0, 0)
        row_width = (
            sum(column.get_render_width(self) for column in self.columns.values())
            + self._row_label_column_width
        )
        y = row_index + (self.header_height if self.show_header else 0)
        return Region(0, y, max(self.size.width, row_width), 1)

    def _get_fixed_offset(self) -> Spacing:
        top = (self.header_height if self.show_header else 0) + min(
            self.fixed_rows, len(self._order)
        )
        left = (
            sum(
                column.get_render_width(self)
                for column in self.ordered_columns[: self.fixed_columns]
            )
            + self._row_label_column_width
        )
        return Spacing(top, 0, 0, left)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        if any(column.auto_width for column in self.columns.values()):
            super()._update_dimensions(new_rows)
            return
        # Every column has its width and every row one line: nothing to measure.
        width = (
            sum(column.get_render_width(self) for column in self.columns.values())
            + self._row_label_column_width
        )
        self.virtual_size = Size(
            width, len(self._order) + (self.header_height if self.show_header else 0)
        )

    @property
    def ordered_rows(self) -> list[Row]:
        cache_key = (len(self.rows), self._update_count)
        ordered = self._ordered_row_cache.get(cache_key)
        if ordered is None:
            rows, row_keys = self.rows, self._row_keys
            ordered = [rows[row_keys[key]] for key in self._order]
            self._ordered_row_cache[cache_key] = ordered
        return ordered

    def _plain_cell(self, value: Cell, width: int) -> list[Segment]:
        """A cell's one line, padded, before any row or cursor style: drawn once per cell
        and width."""
        key = (id(value), width)
        hit = self._plain_cells.get(key)
        if hit is None or hit[0] is not value:
            options = self.app.console_options.update_dimensions(width, 1).update(no_wrap=True)
            line = self.app.console.render_lines(Padding(value, (0, self.cell_padding)), options)
            hit = (value, line[0])
            if len(self._plain_cells) >= _DRAWN_CELLS_MAX:
                self._plain_cells.clear()
            self._plain_cells[key] = hit
        return hit[1]

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._drawn_cells.clear()
        self._plain_cells.clear()
        self._drawn_header = None

    def notify_style_update(self) -> None:
        self._drawn_cells.clear()
        self._plain_cells.clear()
        self._drawn_header = None
        super().notify_style_update()

    # -- sorting by the user -------------------------------------------------------------------

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by `column`; choosing the current column again flips the order."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        cursor_key = self.cursor_key
        self.sort_column, self.sort_reverse = column, reverse
        self._generation += 1
        if self._order:
            index = self._column_keys.index(column)
            self._order_keys = {key: cells[index].order for key, cells in self._cells.items()}
            self._sort_order(index)
            self._renumber()
            self.refresh()
            self._restore_cursor(cursor_key, False)
        self._show_sort_in_header()
        self.post_message(self.Sorted(self, column, reverse))

    def _show_sort_in_header(self) -> None:
        for spec in self.column_specs:
            arrow = ""
            if spec.key == self.sort_column:
                arrow = " ▼" if self.sort_reverse else " ▲"
            self.columns[ColumnKey(spec.key)].label = Text(spec.label + arrow)
        self._clear_caches()
        self.refresh()

    def on_mount(self) -> None:
        if self.sort_column is not None:
            self._show_sort_in_header()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    # -- the cursor ----------------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        row_key = self._row_locations.get_key(self.cursor_row)
        return None if row_key is None else str(row_key.value)


_MISSING = object()
_DRAWN_CELLS_MAX = 8192


def _styled(segments: list[Segment], pre: Style, post: Style) -> list[Segment]:
    """`segments` as Textual's `Styled(renderable, pre, post)` leaves them, with neighbours
    of the same style joined (as the finished line is anyway)."""
    return list(Segment.simplify(Segment.apply_style(segments, pre, post)))


# -- formatting ----------------------------------------------------------------------------


def short_id(peer_id: str | None, head: int = 10, tail: int = 4) -> str:
    """`lb1agbcqi3…4cfq`: enough of a peer id to tell peers apart on one screen."""
    if not peer_id:
        return "—"
    if len(peer_id) <= head + tail + 1:
        return peer_id
    return f"{peer_id[:head]}…{peer_id[-tail:]}"


def age(seconds: float | None) -> str:
    """`42s`, `5m`, `3h`, `2d`: coarse on purpose, so old rows do not change every refresh."""
    if seconds is None or math.isnan(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def duration(seconds: float | None) -> str:
    """`3h 07m 12s`: an uptime or an ETA."""
    if seconds is None:
        return "—"
    seconds = int(max(0.0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """`██████░░░░  60%`: a progress bar that fits in a table cell."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {round(fraction * 100):3d}%"


STATE_STYLES = {
    "queued": "yellow",
    "dispatched": "cyan",
    "running": "bold cyan",
    "done": "green",
    "faulted": "bold red",
    "cancelled": "magenta",
    "expired": "red",
}


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def short_blob(blob_id: str) -> str:
    """`sha256-1a2b3c4d…`: enough of a blob id to tell models and adapters apart."""
    return f"{blob_id[:15]}…" if len(blob_id) > 19 else blob_id or "—"


def model_summary(model_id: str, version: int | None, pending: int | None) -> str:
    """`version 3 · sha256-1a2b3c4d…` or `no model yet · 2 adapters waiting`."""
    parts = [f"version {number(version)} · {short_blob(model_id)}" if model_id else "no model yet"]
    if pending:
        parts.append(f"{plural(pending, 'adapter')} waiting")
    return " · ".join(parts)
