"""Shared helpers for benchmark scripts: argument parsing, a results table, the JSON record."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=150)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="Directory for the JSON result."
    )
    return p


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[Any], object], args: Iterable[Any]) -> list[float]:
    """Seconds each call ``fn(arg)`` took, one sample per argument."""
    samples = []
    for arg in args:
        start = time.perf_counter()
        fn(arg)
        samples.append(time.perf_counter() - start)
    return samples


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    return {
        "mean_ms": statistics.fmean(samples) * 1000,
        "p50_ms": percentile(samples, 0.50) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
    }


def report(name: str, rows: list[dict[str, Any]], out: Path, extra: dict[str, Any]) -> Path:
    """Print the rows as a table and write ``<out>/<name>.json``.

    Each row: metric, unit, ours, baseline, baseline_name, ratio (ours / baseline, oriented so that
    > 1 means fabtrust is better: higher throughput or lower latency).
    """
    table = Table("metric", "fabtrust", "baseline", "ratio", title=f"benchmark: {name}")
    for row in rows:
        base = row.get("baseline")
        table.add_row(
            row["metric"],
            f"{row['ours']:,.3f} {row['unit']}",
            f"{base:,.3f} {row['unit']} ({row['baseline_name']})" if base is not None else "-",
            f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "-",
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    doc = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rows": rows,
        **extra,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"wrote {path}")
    return path


def row(
    metric: str, unit: str, ours: float, baseline: float | None, baseline_name: str, higher_is_better: bool
) -> dict[str, Any]:
    ratio = None
    if baseline:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return {
        "metric": metric,
        "unit": unit,
        "ours": ours,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio,
        "higher_is_better": higher_is_better,
    }


@dataclass
class Subject:
    """One log implementation, as the operations the benchmark times."""

    append_batch: Callable[[list[bytes]], object]
    append_one: Callable[[bytes], object]  # one durable append and its checkpoint (or root)
    size: Callable[[], int]
    fresh_reader: Callable[[int], tuple[Callable[[int], object], Callable[[int], object]]]
    # fresh_reader(size) -> (inclusion proof of index i, consistency proof from old size m), cold caches


def measure(
    subject: Subject, name: str, entries: list[bytes], batch: int, indices: list[int]
) -> dict[str, Any]:
    n = len(entries)
    with console.status(f"{name}: appending {n:,} entries"):
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            subject.append_batch(entries[start : start + batch])
        append_s = time.perf_counter() - t0
    single = timed(subject.append_one, entries[:200])
    size = subject.size()
    prove, consist = subject.fresh_reader(size)
    with console.status(f"{name}: proofs"):
        cold = timed(prove, indices)
        warm = timed(prove, indices)
        cons = timed(consist, [i + 1 for i in indices[:200]])
    return {
        "appends_per_s": n / append_s,
        "checkpoint": summary_ms(single),
        "proof_cold": summary_ms(cold),
        "proof_warm": summary_ms(warm),
        "consistency": summary_ms(cons),
        "size": size,
    }
