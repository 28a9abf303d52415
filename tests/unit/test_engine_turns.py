"""Turns between a scan's batches and on-demand requests, and the scratch catalogs
the requests analyse into."""

from __future__ import annotations

import threading
import time

from tagd.catalog.catalog import Catalog
from tagd.catalog.migrations import SCHEMA_VERSION, schema_version
from tagd.engine.turns import Turns


def test_requests_run_side_by_side() -> None:
    turns = Turns()
    inside = threading.Barrier(2, timeout=5)

    def request() -> None:
        with turns.request():
            inside.wait()  # both inside at once, or this times out

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not inside.broken


def test_scan_batch_waits_for_requests_and_requests_for_the_batch() -> None:
    turns = Turns()
    order: list[str] = []
    release = threading.Event()

    def request() -> None:
        with turns.request():
            order.append("request in")
            release.wait(5)
            order.append("request out")

    def scan() -> None:
        with turns.scan():
            order.append("scan")

    first = threading.Thread(target=request)
    first.start()
    while not order:
        time.sleep(0.001)
    batch = threading.Thread(target=scan)
    batch.start()
    time.sleep(0.05)
    assert order == ["request in"]  # the scan waits for the request running
    release.set()
    first.join(5)
    batch.join(5)
    assert order == ["request in", "request out", "scan"]

    # And a request waits for the batch in flight, not longer.
    order.clear()
    release.clear()

    def long_scan() -> None:
        with turns.scan():
            order.append("scan in")
            release.wait(5)
            order.append("scan out")

    scanning = threading.Thread(target=long_scan)
    scanning.start()
    while not order:
        time.sleep(0.001)
    second = threading.Thread(target=lambda: _enter(turns, order))
    second.start()
    time.sleep(0.05)
    assert order == ["scan in"]
    release.set()
    scanning.join(5)
    second.join(5)
    assert order == ["scan in", "scan out", "request"]


def _enter(turns: Turns, order: list[str]) -> None:
    with turns.request():
        order.append("request")


def test_scratch_catalogs_are_empty_current_and_apart() -> None:
    first = Catalog.scratch()
    second = Catalog.scratch()
    try:
        assert schema_version(first.con) == SCHEMA_VERSION
        first.con.execute("INSERT INTO contents(fingerprint, kind) VALUES ('abc', 'image')")
        assert first.con.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 1
        assert second.con.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 0
        # Foreign keys hold in a copy as in a catalog made afresh.
        assert first.con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        first.close()
        second.close()
    third = Catalog.scratch()  # from the same template, which stayed empty
    try:
        assert third.con.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 0
    finally:
        third.close()
