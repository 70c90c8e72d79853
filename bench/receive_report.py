"""Turn bench/receive.sh's raw results into the receive block of BENCHMARKS.md.

Usage: python3 bench/receive_report.py RESULTS.jsonl BENCHMARKS.md --bench-cmd CMD
       [--load-before L] [--load-after L] [--cores N] [--python-sdk V] [--postgres V]

RESULTS.jsonl has one {"label", "accepted", "commits", "receiver_cpu_us_per_webhook", "result"}
per run, where result is the JSON line `adcp-webhook bench` printed. Runs with the same label
are summarised by their medians; each run's rate is also divided by the Python receiver's rate
of the same round (the i-th run of each label), and the median of those ratios is reported.
The block between <!-- receive:start --> and <!-- receive:end --> is replaced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import OrderedDict

START, END = "<!-- receive:start -->", "<!-- receive:end -->"
PYTHON = "python sdk memory"
ROWS = [
    ("rust memory", "adcp-webhook receive", "in memory", "no"),
    ("rust postgres", "adcp-webhook receive", "PostgreSQL", "no"),
    ("rust memory forward", "adcp-webhook receive", "in memory", "nginx on loopback"),
    ("rust postgres forward", "adcp-webhook receive", "PostgreSQL", "nginx on loopback"),
    (PYTHON, "Python SDK `WebhookReceiver` (uvicorn)", "in memory", "no"),
]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x, digits=1):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def machine(cores: str) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {cores} cores; {rustc}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("markdown")
    ap.add_argument("--bench-cmd", required=True)
    ap.add_argument("--load-before", default="?")
    ap.add_argument("--load-after", default="?")
    ap.add_argument("--cores", default="?")
    ap.add_argument("--python-sdk", default="?")
    ap.add_argument("--postgres", default="?")
    a = ap.parse_args()

    runs: OrderedDict[str, list[dict]] = OrderedDict()
    with open(a.results) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                runs.setdefault(rec["label"], []).append(rec)
    py_rates = [r["result"]["per_sec"] for r in runs.get(PYTHON, [])]

    out = [
        START,
        "",
        f"Machine: {machine(a.cores)}; PostgreSQL {a.postgres} on the same machine; "
        f"official Python SDK adcp {a.python_sdk}. Load average (1, 5, 15 min) before the "
        f"matrix: {a.load_before}; after: {a.load_after} (a shared machine: other work ran too).",
        "",
        "| receiver | store | forward | verified webhooks/s (median) | × Python SDK | "
        "p50 ms | p99 ms | receiver CPU µs/webhook | PostgreSQL commits/webhook | runs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, who, store, fwd in ROWS:
        rs = runs.get(label)
        if not rs:
            continue
        rates = [r["result"]["per_sec"] for r in rs]
        ratios = [rate / py for rate, py in zip(rates, py_rates) if py]
        commits = [r["commits"] / r["result"]["n"] for r in rs if r.get("commits") is not None]
        out.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                who,
                store,
                fwd,
                fmt(median(rates)),
                f"{median(ratios):.1f}×" if ratios else "–",
                fmt(median([r["result"]["p50_ms"] for r in rs]), 2),
                fmt(median([r["result"]["p99_ms"] for r in rs]), 2),
                fmt(median([r.get("receiver_cpu_us_per_webhook") for r in rs])),
                fmt(median(commits), 2) if commits else "–",
                len(rs),
            )
        )
    out += [
        "",
        "Every run was accepted in full: the bench's `failed` count 0, and the receiver's own "
        "count of accepted webhooks (answered 200) equal to n. Each receiver was driven by",
        "",
        "```",
        a.bench_cmd,
        "```",
        "",
        "Raw lines: `bench/last-receive-results.jsonl`.",
        "",
        END,
    ]
    block = "\n".join(out)

    with open(a.markdown) as f:
        text = f.read()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(a.markdown, "w") as f:
        f.write(text)
    print(block)


if __name__ == "__main__":
    sys.exit(main())
