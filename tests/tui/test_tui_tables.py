"""`KeyedTable.apply`: the table shows exactly the rows given, changes only what differs,
keeps its sort and keeps the cursor on the same row."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from lightbox_node.tui.tables import Cell, Column, KeyedTable, age, bar, cell, duration, short_id
from textual.app import App
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

COLUMNS = (Column("name", "Name", 8), Column("score", "Score", 6))


def render(row: tuple[str, float]) -> list[Cell]:
    name, score = row
    return [cell(name), cell(f"{score:g}", sort=score)]


class TableApp(App[None]):
    def compose(self) -> Any:
        yield KeyedTable(COLUMNS, render, sort_column="score", reverse=True, id="table")


def with_table(check: Callable[[KeyedTable, Any], Awaitable[None]]) -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(40, 20)) as pilot:
            await check(app.query_one(KeyedTable), pilot)

    asyncio.run(scenario())


def rows(**scores: float) -> list[tuple[str, Any, tuple[str, float]]]:
    return [(name, score, (name, score)) for name, score in scores.items()]


def shown(table: KeyedTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_rows_are_shown_sorted_and_only_changes_are_applied() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        stats = table.apply(rows(a=1, b=3, c=2))
        assert stats.added == 3
        assert shown(table) == [["b", "3"], ["c", "2"], ["a", "1"]]

        stats = table.apply(rows(a=1, b=3, c=2))
        assert (stats.added, stats.updated_rows, stats.removed) == (0, 0, 0)

        stats = table.apply(rows(a=5, b=3, d=0))
        assert (stats.added, stats.updated_cells, stats.removed) == (1, 1, 1)
        assert shown(table) == [["a", "5"], ["b", "3"], ["d", "0"]]
        assert table.keys == ["a", "b", "d"]

    with_table(check)


def test_the_cursor_stays_on_its_row_when_rows_move() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        table.apply(rows(a=1, b=3, c=2))
        table.move_cursor(row=table.keys.index("c"))
        await pilot.pause()
        table.apply(rows(a=1, b=3, c=2, z=9, y=8))
        await pilot.pause()
        assert table.cursor_key == "c"
        table.apply(rows(b=3))  # c is gone: the cursor stays within the table
        await pilot.pause()
        assert table.cursor_key == "b"

    with_table(check)


def test_choosing_the_sort_column_again_flips_the_order() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        table.apply(rows(a=1, b=3, c=2))
        table.sort_by("name")
        assert table.keys == ["a", "b", "c"]
        table.sort_by("name")
        assert table.keys == ["c", "b", "a"]
        table.apply(rows(a=1, b=3, c=2, d=0))
        assert table.keys == ["d", "c", "b", "a"]
        await pilot.pause()
        assert "Name ▼" in str(table.columns[table.column_specs[0].key].label)  # type: ignore[index]

    with_table(check)


def test_a_header_click_sorts_by_that_column() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        table.apply(rows(a=1, b=3, c=2))
        await pilot.pause()
        await pilot.click(KeyedTable, offset=(2, 0))  # the "Name" header
        await pilot.pause()
        assert table.sort_column == "name" and table.keys == ["a", "b", "c"]

    with_table(check)


def test_many_removals_in_one_batch_leave_a_consistent_table() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        table.apply(rows(**{f"r{i:03d}": float(i) for i in range(300)}))
        table.apply(rows(**{f"r{i:03d}": float(i) for i in range(0, 300, 7)}))
        await pilot.pause()
        assert table.row_count == len(range(0, 300, 7))
        assert table.keys == [f"r{i:03d}" for i in reversed(range(0, 300, 7))]
        assert shown(table)[0] == ["r294", "294"]

    with_table(check)


def test_cells_are_shared_and_sort_numbers_as_numbers() -> None:
    assert cell("running", "cyan") is cell("running", "cyan")
    assert cell("10", sort=10).order < cell("9", sort=900).order
    assert cell("x").order > cell("9", sort=9).order  # text after numbers
    assert Cell("a", sort=None).sort == "a"


def test_formatting_helpers() -> None:
    assert age(42.9) == "42s" and age(61) == "1m" and age(7200) == "2h" and age(None) == "—"
    assert duration(3725) == "1h 02m 05s" and duration(5) == "5s"
    assert bar(0.5, width=4) == "██░░  50%"
    assert short_id("lb1abcdefghijklmnopqrstuvwxyz") == "lb1abcdefg…wxyz"


class SideBySideApp(App[None]):
    """A keyed table beside a plain DataTable, same size, same rows."""

    CSS = "DataTable { width: 40; height: 12; }"

    def compose(self) -> Any:
        with Horizontal():
            yield KeyedTable(COLUMNS, render, sort_column="score", reverse=True, id="keyed")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="plain")


def drawn(table: DataTable) -> list[list[tuple[str, Any, Any]]]:
    width, height = table.size
    lines = table.render_lines(Region(0, 0, width, height))
    return [[(s.text, s.style, s.style and s.style.meta) for s in line] for line in lines]


def test_a_keyed_table_is_drawn_exactly_as_a_datatable_with_the_same_rows() -> None:
    """Same text, colours and the row/column each segment names for the mouse, with the
    cursor and the mouse on various rows, scrolled, and after rows were added above."""

    async def scenario() -> None:
        app = SideBySideApp()
        async with app.run_test(size=(90, 20)) as pilot:
            keyed = app.query_one(KeyedTable)
            plain = app.query_one("#plain", DataTable)
            batch = {f"r{i:02d}": float(i % 7) + i / 100 for i in range(30)}
            for step in range(3):
                keyed.apply(rows(**batch))
                await pilot.pause()
                plain.clear(columns=True)
                for spec in COLUMNS:
                    label = keyed.columns[ColumnKey(spec.key)].label  # with the sort arrow
                    plain.add_column(label, key=spec.key, width=spec.width)
                for key in keyed.keys:
                    plain.add_row(*keyed.get_row(key), key=key)
                for cursor, hover, scroll in ((0, 3, 0), (5, 5, 0), (12, 1, 4), (29, -1, 20)):
                    for table in (keyed, plain):
                        table.cursor_coordinate = Coordinate(cursor, 0)
                        table.hover_coordinate = Coordinate(hover, 0)
                        table.scroll_to(y=scroll, animate=False, immediate=True)
                    for focused in (False, True):
                        pictures = []
                        for table in (keyed, plain):
                            app.set_focus(table if focused else None)
                            await pilot.pause()
                            pictures.append(drawn(table))
                        assert pictures[0] == pictures[1], (step, cursor, hover, scroll, focused)
                # Rows added above the others, some changed, one gone.
                batch = {f"n{step}{i}": 9.0 + i for i in range(4)} | {
                    key: value + (0.5 if i % 5 == 0 else 0)
                    for i, (key, value) in enumerate(batch.items())
                }
                batch.pop(next(iter(batch)))

    asyncio.run(scenario())


def test_a_batch_planned_in_a_worker_thread_changes_nothing_until_committed() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        table.apply(rows(a=1, b=3))
        batch = await asyncio.to_thread(table.plan, rows(a=1, b=3, c=2))
        assert table.keys == ["b", "a"] and table.row_count == 2
        stats = table.commit(batch)
        assert stats.added == 1
        assert shown(table) == [["b", "3"], ["c", "2"], ["a", "1"]]

    with_table(check)


def test_a_batch_planned_before_the_table_changed_is_planned_again() -> None:
    async def check(table: KeyedTable, pilot: Any) -> None:
        table.apply(rows(a=1, b=3))
        late = table.plan(rows(a=1, b=4, c=2))
        table.apply(rows(b=3, d=9))  # committed in between: the late batch's base is gone
        table.sort_by("name")
        table.commit(late)
        assert shown(table) == [["a", "1"], ["b", "4"], ["c", "2"]]
        assert table.commit(table.plan(rows(a=1, b=4, c=2))).updated_cells == 0

    with_table(check)


def test_a_row_followed_off_the_screen_is_scrolled_to_before_the_next_frame() -> None:
    """Rows added above the row under the cursor push it down; once it would leave the
    screen the table scrolls with it at once, so the next frame is drawn once, scrolled."""

    async def check(table: KeyedTable, pilot: Any) -> None:
        batch = {f"r{i:03d}": float(i) for i in range(100)}
        table.apply(rows(**batch))
        await pilot.pause()
        assert table.cursor_key == "r099" and table.scroll_y == 0
        batch |= {f"s{i:03d}": 1000.0 + i for i in range(40)}  # 40 rows above
        table.apply(rows(**batch))
        assert table.cursor_key == "r099" and table.cursor_row == 40
        visible_rows = table.scrollable_content_region.height - table.header_height
        assert table.scroll_y >= 40 - visible_rows + 1

    with_table(check)
