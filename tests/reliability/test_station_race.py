"""Several station processes on one order race for its last units: three workers, started together,
provision in batches of 4 until the quota refuses them. Run on the embedded SQLite store (the
processes share the home's file) and on a shared PostgreSQL database.

Asserted: exactly the quota in records and counter, no sequence number twice, one certificate per
record and the reverse, the log verifies, the units the workers report add up to what was left,
every worker is refused for the quota in the end, and the OEM's reconciliation finds no
overproduction.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from fabtrust.device.agent import DeviceAgent
from fabtrust.production.station import Provisioned
from tests.reliability.conftest import (
    ORDER,
    check_invariants,
    check_log,
    make_line,
    start_worker,
)
from tests.reliability.station_worker import load_vendor

QUOTA = 40
BATCH = 4
WORKERS = 3
ALREADY = 26  # provisioned before the race: 14 units left, three full batches and a partial one
DONE = re.compile(r"done provisioned (\d+) refused-quota (\d+) refused-other (\d+) errors (\d+)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """Where the station home keeps its store: its own SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def test_workers_race_for_the_last_units(tmp_path: Path, database: str | None) -> None:
    line = make_line(tmp_path, QUOTA, database=database)
    try:
        with line.open_station() as home:
            if database is not None:
                assert home.store.dialect == "postgresql"
            vendor = load_vendor(line.vendor_state)
            station = home.station
            answers = []
            for _ in range(ALREADY):
                challenge = station.challenge(ORDER)
                answers.append((challenge, DeviceAgent(vendor.make_chip()).answer(challenge)))
            assert all(isinstance(r, Provisioned) for r in station.provision(ORDER, answers))
            assert check_invariants(home, QUOTA).used == ALREADY

        workers = [start_worker(line, batch=BATCH, wait_go=True) for _ in range(WORKERS)]
        try:
            for proc in workers:
                assert proc.stdout is not None
                ready = proc.stdout.readline()
                assert ready.startswith("ready "), (ready, proc.stderr.read() if proc.stderr else "")
            started = time.monotonic()
            for proc in workers:  # all go at once
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outputs = [proc.communicate(timeout=60) for proc in workers]
            elapsed = time.monotonic() - started
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        totals = []
        for proc, (out, err) in zip(workers, outputs, strict=True):
            assert proc.returncode == 0, err
            match = DONE.fullmatch(out.splitlines()[-1])
            assert match is not None, out.splitlines()[-3:]
            provisioned, refused_quota, refused_other, errors = map(int, match.groups())
            assert refused_quota >= 1, f"a worker stopped without the quota refusing it: {out}"
            assert (refused_other, errors) == (0, 0), out
            totals.append(provisioned)
        assert sum(totals) == QUOTA - ALREADY, totals
        assert elapsed < 30

        with line.open_station() as home:
            counts = check_invariants(home, QUOTA)
            assert (counts.records, counts.certs, counts.used, counts.highest_seq) == (QUOTA,) * 4
            check_log(home, None)
            report = line.oem.reconciler.reconcile(home.station.export())
        assert report.records == QUOTA
        assert report.alerts == []
        assert report.orders[ORDER] == {"quota": QUOTA, "records": QUOTA, "registered": report.registered}
    finally:
        line.oem.close()
