"""`make bench`: run every benchmark, print the tables and write them to BENCHMARKS.md.

Each module measures one area against the obvious alternatives side by side in the same run
and reports ratios. ``--scale full`` is the size the issues ask for; ``--scale quick`` is a smoke
run of the benchmark code itself (seconds to a few minutes).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks.common import Section

MODULES = (
    "bench_pipeline",
    "bench_windows",
    "bench_pit",
    "bench_online",
    "bench_predictor",
    "bench_service",
    "bench_drift",
    "bench_streaming",
    "bench_lake",
    "bench_feast",
    "bench_monitoring",
    "bench_reuse",
    "bench_concurrency",
    "bench_crash",
)


def _machine() -> str:
    return (
        f"{platform.node()}: {psutil.cpu_count(logical=True)} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}, "
        f"load average at start {', '.join(f'{x:.1f}' for x in psutil.getloadavg())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("quick", "full"), default="full")
    parser.add_argument("--only", nargs="*", help="run only these modules (e.g. bench_pit)")
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args()

    header = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (scale `{args.scale}`) on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {_machine()}.",
        "Every table compares contenders run side by side in the same run; ratios are "
        "ours ÷ the alternative unless the column says otherwise.",
        "",
    ]
    sections: list[str] = []
    failed = []
    for name in args.only or MODULES:
        t0 = time.perf_counter()
        print(f"== {name} ({args.scale}) ...", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            results: list[Section] = module.run(args.scale)
        except Exception:  # a broken benchmark must not hide the others' figures
            failed.append(name)
            sections.append(f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}```\n")
            print(sections[-1], flush=True)
            continue
        for section in results:
            text = section.to_markdown()
            print(text, flush=True)
            sections.append(text)
        print(f"== {name} done in {time.perf_counter() - t0:.0f}s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header + sections))
    print(f"wrote {out}")
    if failed:
        raise SystemExit(f"benchmarks failed: {failed}")


if __name__ == "__main__":
    main()
