#!/usr/bin/env python3
"""Markdown tables of the medians from bench/outbox.sh's JSON lines.

    python3 bench/outbox_report.py RESULTS.jsonl [--date D] [--machine M] [--postgres V]
                                   [--load L] [--command C]

Each input line is {"label", "server_cpu_s", "result"} where result is the line printed by
`adcp-webhook bench --outbox ...`. Prints to stdout.
"""

import argparse
import json
import statistics
from collections import OrderedDict


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def dig(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--date")
    ap.add_argument("--machine")
    ap.add_argument("--postgres")
    ap.add_argument("--load")
    ap.add_argument("--command")
    a = ap.parse_args()

    groups = OrderedDict()
    direct_rates = OrderedDict()
    # The direct send measured last for each build ("" or " [base]"): every outbox line is
    # divided by the one of its own run and build.
    last_direct = {}
    with open(a.results) as f:
        for raw in f:
            raw = raw.strip()
            if not raw:
                continue
            rec = json.loads(raw)
            label = rec["label"]
            build = " [base]" if label.endswith(" [base]") else ""
            if label.startswith("direct send"):
                last_direct[build] = rec["result"].get("per_sec")
                direct_rates.setdefault(label, []).append(rec["result"].get("per_sec"))
                continue
            rec["direct"] = last_direct.get(build)
            groups.setdefault(label, []).append(rec)

    out = []
    if a.date or a.machine:
        out.append(
            f"Measured {a.date or ''} on {a.machine or 'this machine'}; {a.postgres or ''}; "
            f"load average at the end: {a.load or '?'}."
        )
        out.append("")
    if a.command:
        out.append(f"Command: `{a.command}`")
        out.append("")

    rows = []
    for label, recs in groups.items():
        rs = [r["result"] for r in recs]
        r0 = rs[0]
        webhooks = [r.get("webhooks") for r in rs]
        server_us = [
            (rec["server_cpu_s"] * 1e6 / rec["result"]["webhooks"])
            if rec.get("server_cpu_s") is not None and rec["result"].get("webhooks")
            else None
            for rec in recs
        ]
        kept = [dig(r, "phases", "keep_up", "kept_up") for r in rs]
        rows.append(
            {
                "label": label,
                "engine": r0.get("engine"),
                "runs": len(rs),
                "n": r0.get("n"),
                "failed": sum(r.get("failed") or 0 for r in rs),
                "enqueue": median(r.get("enqueue_per_sec") for r in rs),
                "drain": median(r.get("delivery_per_sec") for r in rs),
                "x_direct": median(
                    rec["result"].get("delivery_per_sec") / rec["direct"]
                    if rec.get("direct") and rec["result"].get("delivery_per_sec")
                    else None
                    for rec in recs
                ),
                "drain_all": [r.get("delivery_per_sec") for r in rs],
                "offered": median(dig(r, "phases", "keep_up", "offered_per_sec") for r in rs),
                "kept": f"{sum(1 for k in kept if k)}/{len(kept)}",
                "kept_all": all(k for k in kept),
                "p50": median(r.get("first_attempt_p50_ms") for r in rs),
                "p99": median(r.get("first_attempt_p99_ms") for r in rs),
                "p99_all": [r.get("first_attempt_p99_ms") for r in rs],
                "rt": median(r.get("sql_round_trips_per_delivery") for r in rs),
                "commits": median(r.get("xact_commits_per_delivery") for r in rs),
                "rt_keep": median(
                    dig(r, "phases", "keep_up", "sql_statements_per_webhook") for r in rs
                ),
                "client_cpu": median(dig(r, "phases", "drain", "cpu_us_per_webhook") for r in rs),
                "server_cpu": median(server_us),
                "lease_rows": median(
                    dig(r, "phases", "drain", "store_calls", "lease", "rows_per_call") for r in rs
                ),
                "lease_ms": median(
                    dig(r, "phases", "drain", "store_calls", "lease", "ms_per_call") for r in rs
                ),
                "lease_share": median(
                    dig(r, "phases", "drain", "store_calls", "lease", "share_of_phase") for r in rs
                ),
                "complete_rows": median(
                    dig(r, "phases", "drain", "store_calls", "complete", "rows_per_call")
                    for r in rs
                ),
                "complete_ms": median(
                    dig(r, "phases", "drain", "store_calls", "complete", "ms_per_call") for r in rs
                ),
                "enqueue_ms": median(
                    dig(r, "phases", "enqueue", "store_calls", "enqueue", "ms_per_call")
                    for r in rs
                ),
            }
        )

    for label, rates in direct_rates.items():
        out.append(
            f"{label}: median {fmt(median(rates))} webhooks/s (runs: "
            f"{', '.join(fmt(x) for x in rates)}), the baseline of the \"× direct\" column."
        )
        out.append("")
    out.append(
        "| configuration | runs | enqueue webhooks/s | drain deliveries/s | drain × direct (median of per-run ratios) | keep-up offered/s "
        "| kept up | enqueue→first attempt p50 ms | p99 ms | SQL round trips per delivery "
        "(enqueue+lease+complete) | commits per delivery | SQL statements per webhook while keeping up "
        "| drain runs (deliveries/s) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out.append(
            f"| {r['label']} | {r['runs']} | {fmt(r['enqueue'])} | {fmt(r['drain'])} "
            f"| {fmt(r['x_direct'], 3)} "
            f"| {fmt(r['offered'])} | {r['kept']} | {fmt(r['p50'])} | {fmt(r['p99'])} "
            f"| {fmt(r['rt'], 3)} | {fmt(r['commits'], 3)} | {fmt(r['rt_keep'], 2)} "
            f"| {', '.join(fmt(x) for x in r['drain_all'])} |"
        )
    out.append("")
    out.append("Where the drain phase's time goes (medians; store calls timed in the bench process):")
    out.append("")
    out.append(
        "| configuration | lease rows per call | lease ms per call | lease calls' share of the phase "
        "| complete rows per call | complete ms per call | enqueue ms per transaction "
        "| bench process CPU µs per delivery | PostgreSQL server CPU µs per webhook (whole run) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out.append(
            f"| {r['label']} | {fmt(r['lease_rows'], 1)} | {fmt(r['lease_ms'], 2)} "
            f"| {fmt(r['lease_share'], 2)} | {fmt(r['complete_rows'], 1)} "
            f"| {fmt(r['complete_ms'], 2)} | {fmt(r['enqueue_ms'], 2)} | {fmt(r['client_cpu'])} "
            f"| {fmt(r['server_cpu'])} |"
        )
    out.append("")

    pg = [r for r in rows if r["engine"] == "postgres"]
    if pg:
        out.append("| target (PostgreSQL) | wanted | measured (median per configuration) | |")
        out.append("|---|---|---|---|")
        rts = [(r["label"], r["rt"]) for r in pg if r["rt"] is not None]
        worst = max((v for _, v in rts), default=None)
        out.append(
            "| SQL round trips per delivery | ≤ 4 | "
            + "; ".join(f"{fmt(v, 3)} ({l})" for l, v in rts)
            + f" | {'met' if worst is not None and worst <= 4 else '**missed**'} |"
        )
        best = max((r["drain"] for r in pg if r["drain"] is not None), default=None)
        out.append(
            "| deliveries/s to a loopback sink | ≥ 5,000 | "
            + "; ".join(f"{fmt(r['drain'])} ({r['label']})" for r in pg)
            + f" | {'met' if best is not None and best >= 5000 else '**missed**'} |"
        )
        ok = [r for r in pg if r["p99"] is not None]
        verdict = all(r["kept_all"] and r["p99"] < 100 for r in ok) and bool(ok)
        out.append(
            "| p99 enqueue→first attempt while keeping up | < 100 ms | "
            + "; ".join(
                f"{fmt(r['p99'])} ms at {fmt(r['offered'])}/s, kept up {r['kept']} ({r['label']})"
                for r in ok
            )
            + f" | {'met' if verdict else '**missed**'} |"
        )
        out.append("")
    failed = sum(r["failed"] for r in rows)
    if failed:
        out.append(f"**{failed} webhooks were not delivered across the runs** (see the raw lines).")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
