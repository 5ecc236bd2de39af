"""Throughput of the dataset job on a simulated log and on CDNOW, in one invocation.

``python -m beam_pipelines.benchmark --users N --out DIR`` simulates N users
(:mod:`beam_pipelines.simulate`), runs the dataset job
(:func:`beam_pipelines.build_dataset.run`) on the real CDNOW log and then on the
simulated log, and prints one table: rows in and rejected, users and cohorts written,
wall seconds, users/s and event rows/s of each job, the peak RSS of the process after
each stage, the machine and the date, and the ratio of the per-user throughputs.
Figures only: nothing here asserts a speed.

The CDNOW job runs before the simulated job so that the peak RSS printed for it is its
own; ``ru_maxrss`` is a running maximum, so the figure after the simulated job is the
peak of the whole run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import time
from pathlib import Path
from typing import Sequence

from beam_pipelines import build_dataset
from beam_pipelines.simulate import simulate
from htgnn_tf.data.spec import load_spec


def peak_rss_mb() -> float:
    """Peak resident set size of this process and of its finished children, MB."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, children_kb) / 1024


def machine() -> dict:
    """Cores, CPU model and RAM of this machine, read from the OS."""
    cpu_model = platform.processor() or "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
    return {"cores": len(os.sched_getaffinity(0)), "cpu": cpu_model,
            "ram_gb": mem_kb / 1024 ** 2, "load_avg": os.getloadavg()}


def timed_job(spec, out: Path, runner: str) -> dict:
    """Runs the dataset job; returns its figures."""
    start = time.perf_counter()
    report = build_dataset.run(spec, str(out), runner)
    seconds = time.perf_counter() - start
    users = report["users"]["train"] + report["users"]["test"]
    events = report["rows"]["events"]["rows_in"]
    return {
        "event rows in": events,
        "rows rejected": sum(r["rows_rejected"] for r in report["rows"].values()),
        "users written train": report["users"]["train"],
        "users written test": report["users"]["test"],
        "cohorts train": report["cohorts"]["train"],
        "cohorts test": report["cohorts"]["test"],
        "job seconds": seconds,
        "job users/s": users / seconds,
        "job events/s": events / seconds,
        "peak RSS so far (MB)": peak_rss_mb(),
    }


def format_value(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def format_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.benchmark",
        description="Simulate a raw log of N users, run the dataset job on it and on the "
                    "real CDNOW log in the same process, and print the throughput of both "
                    "(users/s, event rows/s), wall times, peak memory and the machine.")
    parser.add_argument("--users", type=int, required=True,
                        help="number of users to simulate (e.g. 100000)")
    parser.add_argument("--out", required=True,
                        help="work directory; gets simulated/ (the log), simulated_dataset/ "
                             "and cdnow_dataset/ (the job outputs)")
    parser.add_argument("--runner", default="FnApiRunner",
                        help="Beam runner for both jobs: FnApiRunner (default) or "
                             "DirectRunner")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the simulator (default 0)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    started = datetime.datetime.now().astimezone()
    load_at_start = os.getloadavg()

    start = time.perf_counter()
    spec_path = simulate(out / "simulated", args.users, seed=args.seed)
    simulation_seconds = time.perf_counter() - start
    simulation_rss = peak_rss_mb()

    cdnow = timed_job(load_spec("cdnow"), out / "cdnow_dataset", args.runner)
    simulated = timed_job(load_spec(str(spec_path)), out / "simulated_dataset", args.runner)
    simulated.update({"users simulated": args.users,
                      "simulation seconds": simulation_seconds,
                      "peak RSS after simulation (MB)": simulation_rss})

    host = machine()
    print(f"\ndate: {started.isoformat(timespec='seconds')}")
    print(f"machine: {host['cores']} cores, {host['cpu']}, {host['ram_gb']:.1f} GB RAM, "
          f"1/5/15-min load average at the start {format_load(load_at_start)}, "
          f"at the end {format_load(host['load_avg'])}")
    print(f"runner: {args.runner}, seed: {args.seed}\n")
    rows = ["users simulated", "simulation seconds", "peak RSS after simulation (MB)",
            *cdnow]
    width = max(map(len, rows))
    print(f"| {'':{width}} | {'simulated':>12} | {'CDNOW':>12} |")
    print(f"|{'-' * (width + 2)}|{'-' * 13}:|{'-' * 13}:|")
    for row in rows:
        print(f"| {row:{width}} | {format_value(simulated.get(row)):>12} "
              f"| {format_value(cdnow.get(row)):>12} |")
    ratio = simulated["job users/s"] / cdnow["job users/s"]
    print(f"\nper-user throughput, simulated / CDNOW: {ratio:.2f}")


if __name__ == "__main__":
    main()
