"""Crash safety of the station's quota: a station process is SIGKILLed at random points (while it
starts, inside a provisioning transaction, right after a commit, at a random moment) run after run
on the same station home, until the order's quota is used up.

After every kill the home is reopened and must hold: at most the quota in records and counter, the
counter equal to the highest sequence recorded with no gap, one certificate per record and one
record per certificate, no duplicate chip or serial, all of a batch or none of it, every batch the
worker reported as committed still there, and an audit log that verifies and extends the one seen
after the previous run. At the end: the quota met exactly, one more device refused for the quota,
and the OEM's reconciliation of the station's export finding no overproduction.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fabtrust.device.agent import DeviceAgent
from fabtrust.errors import PolicyViolation
from fabtrust.tlog.checkpoint import Checkpoint
from tests.reliability.conftest import ORDER, Line, check_invariants, check_log, make_line, start_worker
from tests.reliability.station_worker import load_vendor

QUOTA = 600
RUNS = 32
SEED = 20310504
MODES = ("startup", "in-transaction", "after-commit", "random")
WAIT = 30.0  # seconds: a worker line that does not come in this time fails the run


@dataclass
class Outcome:
    lines: list[str]
    killed: bool
    returncode: int

    def committed(self) -> int:
        return sum(int(line.split()[1]) for line in self.lines if line.startswith("committed "))

    def batch_open(self) -> bool:
        """Was a provisioning transaction open (begun, not reported committed) when it died?"""
        tx = [line for line in self.lines if line.startswith("tx-")]
        return bool(tx) and tx[-1] == "tx-open provision"

    def state(self, gained: int) -> str:
        """Where the kill landed, from what the worker said and what the store holds."""
        if not any(line.startswith("ready") for line in self.lines):
            return "before-ready"
        if self.batch_open():
            # killed inside the batch's transaction (rolled back) or between its commit and the report
            return "in-transaction" if gained == self.committed() else "after-commit-unreported"
        return "between-transactions"


def run_until(proc: subprocess.Popen[str], stop: Callable[[str, list[str]], bool]) -> tuple[list[str], bool]:
    """Read the worker's lines until ``stop`` says so (True) or the worker ends (False)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        raw = proc.stdout.readline()
        if not raw:
            return lines, False
        lines.append(raw.strip())
        if stop(lines[-1], lines):
            return lines, True
    raise AssertionError(f"the worker stalled; last lines {lines[-5:]}")


def nth(prefix: str, n: int) -> Callable[[str, list[str]], bool]:
    return lambda line, lines: line.startswith(prefix) and sum(x.startswith(prefix) for x in lines) == n


def crash_once(line: Line, rng: random.Random, mode: str, batch: int) -> Outcome:
    """One worker run on the home, killed at a point chosen by ``mode`` (unless it ran out first)."""
    proc = start_worker(line, batch=batch)
    lines: list[str] = []
    try:
        if mode == "startup":
            time.sleep(rng.uniform(0.0, 0.5))
            alive = proc.poll() is None
        elif mode == "in-transaction":
            lines, alive = run_until(proc, nth("tx-open provision", rng.randint(1, 4)))
            time.sleep(rng.uniform(0.0, 0.004))
        elif mode == "after-commit":
            lines, alive = run_until(proc, nth("committed ", rng.randint(1, 4)))
        else:
            lines, alive = run_until(proc, nth("ready", 1))
            time.sleep(rng.uniform(0.0, 0.15))
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed = proc.returncode == -signal.SIGKILL
    assert killed or proc.returncode == 0, err
    return Outcome(lines + rest.splitlines(), killed, proc.returncode)


def test_station_killed_at_random_points_never_breaks_the_quota(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    line = make_line(tmp_path, QUOTA)
    modes = [MODES[i % len(MODES)] for i in range(RUNS)]
    rng.shuffle(modes)
    states: Counter[str] = Counter()
    previous: Checkpoint | None = None
    records = 0
    try:
        for run, mode in enumerate(modes):
            # a kill aimed inside a transaction gets a batch whose transaction lasts long enough
            batch = rng.choice((8, 16) if mode == "in-transaction" else (4, 8, 16))
            outcome = crash_once(line, rng, mode, batch)
            where = f"run {run} ({mode}, batch {batch}): {outcome.lines[-4:]}"
            assert outcome.killed, f"the worker finished before the kill, quota too small: {where}"
            with line.open_station() as home:
                counts = check_invariants(home, QUOTA)
                previous = check_log(home, previous)
            gained, reported = counts.records - records, outcome.committed()
            # every batch reported committed is there; at most one more, whole, committed unreported
            assert gained in (reported, reported + batch), f"gained {gained}, reported {reported}: {where}"
            states[outcome.state(gained)] += 1
            if outcome.state(gained) == "before-ready":
                assert gained == 0, where
            records = counts.records
        # the kills landed in each kind of place
        print(f"where the kills landed: {dict(states)}")
        assert states["before-ready"] >= 3, states
        assert states["between-transactions"] >= 3, states
        assert states["in-transaction"] >= 3, states

        # a last run, not killed, uses up the quota and is refused for it
        proc = start_worker(line, batch=16)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        last = out.splitlines()
        assert last[-1].startswith("done "), last[-3:]
        assert "refused-quota 0" not in last[-1], last[-3:]
        assert sum(int(x.split()[1]) for x in last if x.startswith("committed ")) == QUOTA - records

        with line.open_station() as home:
            counts = check_invariants(home, QUOTA)
            check_log(home, previous)
            assert (counts.records, counts.certs, counts.used) == (QUOTA, QUOTA, QUOTA)
            station = home.station
            chip = load_vendor(line.vendor_state).make_chip()
            challenge = station.challenge(ORDER)
            [refused] = station.provision(ORDER, [(challenge, DeviceAgent(chip).answer(challenge))])
            assert isinstance(refused, PolicyViolation), refused
            assert refused.message == f"the quota of order {ORDER} at this station is exhausted ({QUOTA})"
            assert check_invariants(home, QUOTA) == counts

            report = line.oem.reconciler.reconcile(station.export())
            assert report.records == QUOTA
            assert not [a for a in report.alerts if a["kind"] == "overproduction"], report.alerts
            assert report.alerts == []
            assert report.orders[ORDER]["records"] == QUOTA
            assert report.registered + report.awaiting_receipt == QUOTA
    finally:
        line.oem.close()
