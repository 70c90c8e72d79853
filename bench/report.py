"""Turn bench/run.sh's raw results into the results block of BENCHMARKS.md.

Usage: python3 bench/report.py RESULTS.jsonl BENCHMARKS.md [OVERHEAD.jsonl] [WRK.txt]

RESULTS.jsonl has one {"label": ..., "result": {...}} per run, where result is the JSON line a
bench printed. Runs with the same label are summarised by their medians. The block between
<!-- results:start --> and <!-- results:end --> in BENCHMARKS.md is replaced; the rest of the
file is left as it is.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections import OrderedDict

START, END = "<!-- results:start -->", "<!-- results:end -->"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x, digits=1):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{cpu}, {cores} cores, {platform.system()} {platform.release()}; {rustc}; "
        f"load average at the end of the run: {load}"
    )


def read_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip().startswith("{")]
    except (OSError, ValueError):
        return []


def wrk_rate(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("Requests/sec:"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def main() -> int:
    results_path, md_path = sys.argv[1], sys.argv[2]
    overhead = read_lines(sys.argv[3]) if len(sys.argv) > 3 else []
    raw_limit = wrk_rate(sys.argv[4]) if len(sys.argv) > 4 else None
    runs: "OrderedDict[str, list[dict]]" = OrderedDict()
    with open(results_path) as f:
        for line in f:
            line = line.strip()
            if line:
                entry = json.loads(line)
                runs.setdefault(entry["label"], []).append(entry["result"])

    summary = {}
    for label, rs in runs.items():
        mode = rs[0].get("mode")
        if rs[0].get("enqueue_batch"):
            mode = f"{mode} ({rs[0]['enqueue_batch']} per enqueue transaction)"
        summary[label] = {
            "impl": rs[0].get("impl"),
            "mode": mode,
            "alg": rs[0].get("alg"),
            "n": rs[0].get("n"),
            "runs": len(rs),
            "failed": sum(r.get("failed") or 0 for r in rs),
            "per_sec": median(r.get("per_sec") for r in rs),
            "p50_ms": median(r.get("p50_ms") for r in rs),
            "p99_ms": median(r.get("p99_ms") for r in rs),
            "rss": median(r.get("peak_rss_mb") for r in rs),
            "cpu": median(r.get("cpu_us_per_webhook") for r in rs),
            "all_per_sec": [r.get("per_sec") for r in rs],
        }

    ours = summary.get("rust signed ed25519", {}).get("per_sec")
    lines = [START, ""]
    lines.append(f"Machine: {machine()}.")
    lines.append("")
    if raw_limit:
        lines.append(
            f"Raw sink limit (wrk, 1 thread, as many connections as the senders' concurrency, "
            f"unsigned 2-byte POST, same run): {raw_limit:,.0f} requests/s."
        )
        lines.append("")
    lines.append(
        "| sender | mode | alg | n per run | runs | webhooks/s (median) | p50 ms | p99 ms "
        "| peak RSS MB | CPU µs/webhook | ours signed ÷ this | runs (webhooks/s) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, s in summary.items():
        ratio = (ours / s["per_sec"]) if ours and s["per_sec"] else None
        failed = f" ({s['failed']} failed)" if s["failed"] else ""
        lines.append(
            f"| {s['impl']} | {s['mode']}{failed} | {s['alg'] or '–'} | {s['n']} | {s['runs']} "
            f"| {fmt(s['per_sec'], 0)} | {fmt(s['p50_ms'], 2)} | {fmt(s['p99_ms'], 2)} "
            f"| {fmt(s['rss'], 1)} | {fmt(s['cpu'], 0)} | {fmt(ratio, 2)}x | "
            + ", ".join(fmt(x, 0) for x in s["all_per_sec"])
            + " |"
        )
    lines.append("")

    def get(label, key):
        return summary.get(label, {}).get(key)

    checks = []

    def ratio_check(name, num, den, target):
        if num and den:
            r = num / den
            verdict = "met" if r >= target else "**missed**"
            checks.append(f"| {name} | ≥ {target}x | {r:.2f}x | {verdict} |")
        else:
            checks.append(f"| {name} | ≥ {target}x | not measured | – |")

    ratio_check("signed ÷ JS SDK", ours, get("js signed ed25519", "per_sec"), 10)
    ratio_check("signed ÷ Python SDK pooled", ours, get("python pooled ed25519", "per_sec"), 50)
    ratio_check("signed ÷ our unsigned", ours, get("rust unsigned", "per_sec"), 0.6)
    p99 = get("rust signed ed25519", "p99_ms")
    if p99 is not None:
        checks.append(f"| p99 of signed sends | < 5 ms | {p99:.2f} ms | {'met' if p99 < 5 else '**missed**'} |")
    rss = get("rust signed ed25519", "rss")
    if rss is not None:
        n = get("rust signed ed25519", "n")
        checks.append(
            f"| peak RSS, {n} sends queued | < 64 MB | {rss:.1f} MB | {'met' if rss < 64 else '**missed**'} |"
        )
    for o in overhead:
        if o.get("body") != "1KiB":
            continue
        r = o["ratio"]
        checks.append(
            f"| {o['alg']} signing pipeline ÷ bare primitive, 1 KiB | ≤ 1.3x | {r:.2f}x "
            f"({o['pipeline_us']:.1f} µs vs {o['primitive_us']:.1f} µs) | {'met' if r <= 1.3 else '**missed**'} |"
        )
    lines.append("| target | wanted | measured | |")
    lines.append("|---|---|---|---|")
    lines.extend(checks)
    lines.append("")
    if overhead:
        lines.append("Signing pipeline (`sign_webhook`) beside the bare primitive (SHA-256 of the body + one raw")
        lines.append("signature), alternating blocks, median of 41 pair ratios (`benches/overhead.rs`):")
        lines.append("")
        lines.append("| alg | body | primitive µs | pipeline µs | ratio |")
        lines.append("|---|---|---|---|---|")
        for o in overhead:
            lines.append(
                f"| {o['alg']} | {o['body']} | {o['primitive_us']:.1f} | {o['pipeline_us']:.1f} | {o['ratio']:.2f}x |"
            )
        lines.append("")
    lines.append(END)
    block = "\n".join(lines)

    try:
        with open(md_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(md_path, "w") as f:
        f.write(text)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
