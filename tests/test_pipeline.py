"""The writer thread behind the migration: order, back-pressure, errors, abort."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.copytext import NULL, escape, escape_column
from isthmus.pipeline import Pipeline, Turn


def test_items_are_written_in_submission_order_by_one_thread() -> None:
    seen: list[int] = []
    threads: set[int] = set()

    def write(item: int, lane: int, turn: Turn) -> None:
        threads.add(threading.get_ident())
        time.sleep(0.001)
        with turn:
            seen.append(item)

    pipe: Pipeline[int] = Pipeline(write, depth=2)
    for i in range(50):
        pipe.submit(i)
    pipe.close()
    assert seen == list(range(50))
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_two_lanes_prepare_at_once_but_commit_in_order() -> None:
    committed: list[int] = []
    lanes_used: set[int] = set()

    def write(item: int, lane: int, turn: Turn) -> None:
        lanes_used.add(lane)
        time.sleep(0.01 if item % 3 == 0 else 0.001)  # some batches take longer to prepare
        with turn:
            committed.append(item)

    pipe: Pipeline[int] = Pipeline(write, lanes=2, depth=2)
    for i in range(40):
        pipe.submit(i)
    pipe.close()
    assert committed == list(range(40))
    assert lanes_used == {0, 1}


def test_after_a_failure_no_later_batch_commits() -> None:
    committed: list[int] = []

    def write(item: int, lane: int, turn: Turn) -> None:
        if item == 5:
            time.sleep(0.02)
            raise RuntimeError("batch 5 failed")
        with turn:
            committed.append(item)

    pipe: Pipeline[int] = Pipeline(write, lanes=2, depth=2)
    with pytest.raises(RuntimeError, match="batch 5 failed"):
        for i in range(30):
            pipe.submit(i)
        pipe.close()
    pipe.abort()
    assert committed == [0, 1, 2, 3, 4]


def test_submit_blocks_while_the_queue_is_full() -> None:
    release = threading.Event()
    written: list[int] = []

    def write(item: int, lane: int, turn: Turn) -> None:
        release.wait(5)
        with turn:
            written.append(item)

    pipe: Pipeline[int] = Pipeline(write, depth=1)
    pipe.submit(1)  # taken by the writer, which waits
    time.sleep(0.05)
    pipe.submit(2)  # fills the queue
    done = threading.Event()

    def third() -> None:
        pipe.submit(3)
        done.set()

    threading.Thread(target=third, daemon=True).start()
    assert not done.wait(0.3), "a third batch must wait for room"
    release.set()
    assert done.wait(5)
    pipe.close()
    assert written == [1, 2, 3]


def test_a_writer_error_reaches_the_submitter_and_stops_writing() -> None:
    written: list[int] = []

    def write(item: int, lane: int, turn: Turn) -> None:
        if item == 3:
            raise ValueError("batch 3 refused")
        with turn:
            written.append(item)

    pipe: Pipeline[int] = Pipeline(write, depth=1)
    with pytest.raises(ValueError, match="batch 3 refused"):
        for i in range(100):
            pipe.submit(i)
        pipe.close()
    pipe.abort()
    assert written == [0, 1, 2]


def test_abort_drops_queued_items_and_lets_the_current_one_finish() -> None:
    started = threading.Event()
    release = threading.Event()
    written: list[int] = []

    def write(item: int, lane: int, turn: Turn) -> None:
        started.set()
        release.wait(5)
        with turn:
            written.append(item)

    pipe: Pipeline[int] = Pipeline(write, depth=3)
    pipe.submit(1)
    assert started.wait(5)
    pipe.submit(2)
    pipe.submit(3)
    threading.Timer(0.1, release.set).start()
    pipe.abort()
    assert written == [1]


@given(st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=30))
def test_escaping_a_column_at_once_equals_escaping_each_value(
    values: list[bytes | None],
) -> None:
    expected = [NULL if v is None else escape(v) for v in values]
    assert escape_column(values) == expected


def test_a_failure_lets_every_earlier_batch_commit() -> None:
    committed: list[int] = []
    release = threading.Event()

    def write(item: int, lane: int, turn: Turn) -> None:
        if item == 3:
            raise RuntimeError("batch 3 failed")
        if item == 2:
            release.wait(5)  # batch 2 is still being prepared when batch 3 fails
        with turn:
            committed.append(item)

    pipe: Pipeline[int] = Pipeline(write, lanes=2, depth=1)
    with pytest.raises(RuntimeError, match="batch 3 failed"):
        for i in range(10):
            pipe.submit(i)
            if i == 3:
                time.sleep(0.1)
                release.set()
        pipe.close()
    pipe.abort()
    assert committed == [0, 1, 2]
