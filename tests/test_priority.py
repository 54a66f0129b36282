"""Search priority: background indexing steps wait for searches in flight (within their share), a
search waits only for a step already running, and document passes shrink while searches are recent.
Ordering is checked with events, not with timings."""

from __future__ import annotations

import threading
import time

from xmsearch.retriever.model.priority import SearchPriority

SLACK = 5.0  # a bound that a blocked thread would exceed; nothing here waits for it when all is well


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_background_step_waits_for_a_search_in_flight() -> None:
    gate = SearchPriority(share=0.5, background_batch=4)
    time.sleep(0.05)  # background work "ran" 50 ms: it may wait up to 50 ms, far less than the search
    events: list[str] = []
    in_search, release = threading.Event(), threading.Event()

    def search() -> None:
        with gate.search():
            in_search.set()
            release.wait(SLACK)
            events.append("search done")

    def step() -> None:
        with gate.background():
            events.append("step")

    searcher = _in_thread(search)
    assert in_search.wait(SLACK)
    stepper = _in_thread(step)
    time.sleep(0.2)  # past the step's allowance: it now waits only for the search in flight to end
    assert events == []
    release.set()
    searcher.join(SLACK)
    stepper.join(SLACK)
    assert events == ["search done", "step"]


def test_a_search_waits_for_a_running_step_and_new_steps_let_it_in() -> None:
    gate = SearchPriority(share=0.5, background_batch=4)
    in_step, release = threading.Event(), threading.Event()
    events: list[str] = []

    def step() -> None:
        with gate.background():
            in_step.set()
            release.wait(SLACK)
            events.append("step")

    def search() -> None:
        with gate.search():
            events.append("search")

    stepper = _in_thread(step)
    assert in_step.wait(SLACK)
    searcher = _in_thread(search)
    time.sleep(0.05)
    assert events == []  # the search is at the door
    release.set()
    stepper.join(SLACK)
    searcher.join(SLACK)
    assert events == ["step", "search"]


def test_with_searches_back_to_back_background_steps_still_advance() -> None:
    gate = SearchPriority(share=0.5, background_batch=4)
    stop = threading.Event()

    def searches() -> None:
        while not stop.is_set():
            with gate.search():
                time.sleep(0.005)

    clients = [_in_thread(searches) for _ in range(3)]
    steps = 0
    deadline = time.monotonic() + SLACK
    while steps < 5 and time.monotonic() < deadline:
        with gate.background():
            steps += 1
    stop.set()
    for c in clients:
        c.join(SLACK)
    assert steps == 5


def test_no_priority_never_waits_and_keeps_full_passes() -> None:
    gate = SearchPriority(share=1.0, background_batch=4)
    done = threading.Event()

    def step() -> None:
        with gate.background():
            done.set()

    with gate.search():
        _in_thread(step)
        assert done.wait(SLACK)
        assert gate.pass_size(32) == 32


def test_document_passes_shrink_while_searches_are_recent() -> None:
    gate = SearchPriority(share=0.25, background_batch=4)
    assert gate.pass_size(32) == 32  # no search yet
    with gate.search():
        assert gate.pass_size(32) == 4
    assert gate.pass_size(32) == 4  # just after one
    assert gate.pass_size(2) == 2
