"""Which rows go into one output file (`pipeline.filing`): cut at the row count, flushed on time."""

import contextlib
import itertools
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from pipeline.filing import Filing, arrivals, table_of, write_file


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_files_are_cut_at_the_row_count_whatever_the_items_sizes():
    filing: Filing[str] = Filing(rows_per_file=10, flush_s=0)
    files = [*filing.add("a", 4), *filing.add("b", 25), *filing.add("c", 3)]
    assert files == [[("a", 0, 4), ("b", 0, 6)], [("b", 6, 16)], [("b", 16, 25), ("c", 0, 1)]]
    assert filing.pieces == [("c", 1, 3)] and filing.rows == 2
    assert filing.wait_s() is None and not filing.overdue()  # no flush on time: the rest waits for the end
    assert filing.take() == [("c", 1, 3)] and filing.rows == 0


def test_rows_that_waited_flush_s_are_due_however_few():
    clock = Clock()
    filing: Filing[str] = Filing(rows_per_file=1000, flush_s=30, clock=clock)
    assert filing.wait_s() is None  # nothing waits
    assert not list(filing.add("a", 5))
    clock.now += 20
    assert not list(filing.add("b", 5))
    assert filing.wait_s() == 10 and not filing.overdue()  # timed from the oldest waiting row
    clock.now += 10
    assert filing.overdue() and filing.take() == [("a", 0, 5), ("b", 0, 5)]
    clock.now += 100
    assert not filing.overdue()  # the clock starts again with the next row
    assert not list(filing.add("c", 1)) and filing.wait_s() == 30


def test_a_file_is_its_pieces_rows_in_order():
    first, second = pa.table({"x": [0, 1, 2, 3]}), pa.table({"x": [4, 5, 6]})
    filing: Filing[pa.Table] = Filing(rows_per_file=5, flush_s=0)
    (pieces,) = [*filing.add(first, 4), *filing.add(second, 3)]
    assert table_of(pieces).column("x").to_pylist() == [0, 1, 2, 3, 4]


def test_arrivals_come_in_order_with_a_pause_marked_and_a_failure_raised():
    def slow() -> Iterator[int]:
        yield 1
        time.sleep(0.3)
        yield 2
        raise OSError("the dataset failed")

    seen = []
    with pytest.raises(OSError, match="the dataset failed"):
        for item in arrivals(slow, lambda: 0.05):
            seen.append(item)
    assert [item for item in seen if item is not None] == [1, 2] and None in seen


def test_a_caller_that_stops_early_stops_the_reader():
    handed = []

    def endless() -> Iterator[int]:
        for n in itertools.count():
            handed.append(n)
            yield n

    for item in arrivals(endless, lambda: None):
        if item == 3:
            break
    time.sleep(0.5)
    read = len(handed)
    time.sleep(0.5)
    assert read == len(handed) <= 6  # the reader stopped: at most what the queue and its hands held


def test_closing_stops_a_reader_waiting_inside_the_iterator():
    """As Ray Data's iterator does: it waits for output in a polling loop, and shuts its executor down on any
    exception raised there. Closing the arrivals must have done that by the time it returns."""
    events = []

    class Polling:
        def __iter__(self) -> "Polling":
            return self

        def __next__(self) -> int:
            if not events:
                events.append("first")
                return 1
            try:
                while True:  # output that never comes
                    time.sleep(0.01)
            except BaseException:
                events.append("shut down")
                raise

    with contextlib.closing(arrivals(Polling, lambda: None)) as arrived:
        assert next(arrived) == 1
        time.sleep(0.1)  # the reader is now waiting inside the iterator
    assert events == ["first", "shut down"]


class Collect:
    """A stand-in sink stage: returns the rows it was given."""

    def __init__(self, **args: object) -> None:
        self.args = args

    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch


def test_a_sink_task_writes_its_spans_and_refuses_a_block_that_changed_size():
    first, second = pa.table({"x": [0, 1, 2, 3]}), pa.table({"x": [4, 5, 6]})
    written = write_file(Collect, {}, [(4, 2, 4), (3, 0, 1)], first, second)
    assert written.column("x").to_pylist() == [2, 3, 4]
    with pytest.raises(RuntimeError, match="a block changed size"):  # rebuilt after a lost node, with other rows
        write_file(Collect, {}, [(3, 2, 3)], first)
