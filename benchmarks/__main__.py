"""``python -m benchmarks [--quick] [--only NAME ...] [--json PATH] [--markdown PATH]``.

Each benchmark runs in a fresh child process (no router threads, imports or heap left over
from the previous one) under a wall-clock budget; the parent collects the results and prints
one table. A MISS is reported, not an error: the exit status is non-zero only when a benchmark
could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import BENCHMARKS
from .harness import BenchResult, Scale, clean_env, machine_note
from .report import console_table, from_json, markdown_table, to_json


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, fewer trials")
    size.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"one of {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown table here")
    parser.add_argument("--in-process", action="store_true", help="no child processes")
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [name for value in args.only for name in value.split(",") if name]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {list(BENCHMARKS)}")
    args.names = names or list(BENCHMARKS)
    args.scale = Scale("smoke" if args.smoke else "quick" if args.quick else "full")
    return args


def run_in_process(name: str, scale: Scale) -> BenchResult:
    module = importlib.import_module(BENCHMARKS[name][0])
    started = time.perf_counter()
    result: BenchResult = module.run(scale)
    result.seconds = time.perf_counter() - started
    return result


def run_in_child(name: str, scale: Scale) -> BenchResult:
    budget = BENCHMARKS[name][1] * (1.0 if scale.name == "full" else 0.5)
    flag = {"full": [], "quick": ["--quick"], "smoke": ["--smoke"]}[scale.name]
    with tempfile.TemporaryDirectory(prefix="scr-bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "benchmarks", "--only", name, "--child-out", str(out)]
        completed = subprocess.run(
            command + flag, env=clean_env(), timeout=budget, check=False, cwd=tmp
        )
        if completed.returncode != 0 or not out.exists():
            raise RuntimeError(f"benchmark {name} failed (exit status {completed.returncode})")
        return from_json(json.loads(out.read_text(encoding="utf-8")))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for name, (module, budget) in BENCHMARKS.items():
            print(f"{name:10} {module} (budget {budget:g}s)")
        return 0
    if args.child_out is not None:
        result = run_in_process(args.names[0], args.scale)
        args.child_out.write_text(json.dumps(result.as_dict()), encoding="utf-8")
        return 0
    results: list[BenchResult] = []
    failed: list[str] = []
    load_at_start = machine_note()["load_average_1m"]
    started = time.perf_counter()
    for name in args.names:
        print(f"[benchmarks] {name} ({args.scale.name}) ...", file=sys.stderr, flush=True)
        try:
            if args.in_process:
                result = run_in_process(name, args.scale)
            else:
                result = run_in_child(name, args.scale)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"[benchmarks] {name}: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        print(f"[benchmarks] {name} done in {result.seconds:.1f}s", file=sys.stderr, flush=True)
        results.append(result)
    machine = machine_note()
    machine["wall_seconds"] = round(time.perf_counter() - started, 1)
    machine["load_average_1m"] = f"{load_at_start} at start, {machine['load_average_1m']} at end"
    print(console_table(results))
    print("\n" + "; ".join(f"{key}: {value}" for key, value in machine.items()))
    if args.json is not None:
        args.json.write_text(to_json(results, machine), encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(results) + "\n", encoding="utf-8")
    if failed:
        print(f"[benchmarks] could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
