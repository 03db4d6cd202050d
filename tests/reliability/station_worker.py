"""A station process for the reliability tests: opens an existing station home whose package is
loaded, and provisions devices in batches until the quota refuses it, ``--devices`` are done, or it
is killed.

Run as ``python -m tests.reliability.station_worker HOME ORDER --vendor-state FILE --batch K
[--devices N] [--wait-go]``; the home's key-store passphrase comes from ``FABTRUST_PASSPHRASE``.

The chips come from the simulated vendor the product accepts. A ``SiliconVendor`` holds its CA
keys in memory only, so the test that creates the vendor writes its state
(``SiliconVendor.export_state``) with :func:`save_vendor` and every worker rebuilds the same vendor
with :func:`load_vendor`: the chips it makes chain to the root the product was created with.

Protocol on stdout, one flushed line per event, so the parent can kill the worker at any point
and compare what was reported with what the store holds::

    ready <pid>
    tx-open <phase>                 a write transaction of the station's store begins
    tx-commit <phase>               ... and has committed (phase: provision, complete, other)
    committed <n> total <total>     after each provision batch has committed (n devices in it)
    programmed <n>                  after the batch's install receipts were recorded
    refused-quota <n>               devices of a batch refused for the quota
    refused-other <n> <reason>      any other per-device refusal
    error <reason>                  a whole batch refused (exception out of provision)
    done provisioned <p> refused-quota <q> refused-other <o> errors <e>
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import Connection

from fabtrust.device.agent import DeviceAgent
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import FabtrustError, PolicyViolation
from fabtrust.home import Home
from fabtrust.production.station import Provisioned

PASSPHRASE_ENV = "FABTRUST_PASSPHRASE"


def save_vendor(vendor: SiliconVendor, path: Path) -> None:
    """The vendor's state for another process (``SiliconVendor.export_state``, test-only)."""
    path.write_bytes(vendor.export_state())


def load_vendor(path: Path) -> SiliconVendor:
    """The vendor :func:`save_vendor` wrote: same name, birth CA key and certificates."""
    return SiliconVendor.load_state(path.read_bytes())


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _Phase:
    name = "other"


def _trace_writes(home: Home, phase: _Phase) -> None:
    """Announce every write transaction of the home's store (the station, its PKI and its log
    share that one ``Store`` object), so the parent knows whether a kill hit an open one."""
    original: Callable[[], AbstractContextManager[Connection]] = home.store.write

    @contextmanager
    def traced() -> Iterator[Connection]:
        _say(f"tx-open {phase.name}")
        with original() as conn:
            yield conn
        _say(f"tx-commit {phase.name}")

    home.store.write = traced  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="station_worker")
    parser.add_argument("home", type=Path)
    parser.add_argument("order")
    parser.add_argument("--vendor-state", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--devices", type=int, default=None, help="stop after this many (default: quota)")
    parser.add_argument("--actor", default="station-worker")
    parser.add_argument("--wait-go", action="store_true", help="start after a line on stdin")
    args = parser.parse_args(argv)
    passphrase = os.environ[PASSPHRASE_ENV]

    def no_pin() -> str:
        raise AssertionError("a PIN was asked for")

    vendor = load_vendor(args.vendor_state)
    home = Home.open(args.home, passphrase=lambda: passphrase, pin=no_pin, actor=args.actor)
    phase = _Phase()
    _trace_writes(home, phase)
    station = home.station
    station.order_status(args.order)  # fails loudly if no package is loaded
    _say(f"ready {os.getpid()}")
    if args.wait_go:
        sys.stdin.readline()
    provisioned = refused_quota = refused_other = errors = 0
    try:
        while args.devices is None or provisioned < args.devices:
            want = args.batch if args.devices is None else min(args.batch, args.devices - provisioned)
            chips = {}
            answers = []
            for _ in range(want):
                chip = vendor.make_chip()
                chips[chip.uid] = chip
                challenge = station.challenge(args.order)
                answers.append((challenge, DeviceAgent(chip).answer(challenge)))
            phase.name = "provision"
            try:
                results = station.provision(args.order, answers)
            except FabtrustError as exc:
                errors += 1
                _say(f"error {type(exc).__name__}: {exc.message}")
                continue
            done = [r for r in results if isinstance(r, Provisioned)]
            provisioned += len(done)
            if done:
                _say(f"committed {len(done)} total {provisioned}")
            quota = [r for r in results if isinstance(r, PolicyViolation) and "quota" in r.message]
            other = [r for r in results if not isinstance(r, Provisioned) and r not in quota]
            if other:
                refused_other += len(other)
                _say(f"refused-other {len(other)} {other[0]!r}")
            image = station.image(args.order)
            receipts = [DeviceAgent(chips[p.chip_uid]).install(p.provisioning, image) for p in done]
            if receipts:
                phase.name = "complete"
                outcome = station.complete(receipts)
                bad = [o for o in outcome if not isinstance(o, str)]
                if bad:
                    refused_other += len(bad)
                    _say(f"refused-other {len(bad)} {bad[0]!r}")
                _say(f"programmed {len(outcome) - len(bad)}")
            phase.name = "other"
            if quota:
                refused_quota += len(quota)
                _say(f"refused-quota {len(quota)}")
                break
    finally:
        home.close()
    _say(
        f"done provisioned {provisioned} refused-quota {refused_quota} "
        f"refused-other {refused_other} errors {errors}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
