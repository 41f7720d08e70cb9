"""Figures of ``bench/scaleout.py``: one cell's record, the tables, the summary against
issue 17's targets, the pg_stat_statements report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

CONFIGS = {"sqlite": ("sqlite", 1), "pg": ("postgresql", 1), "pg-w2": ("postgresql", 2)}
LOADS = ("mo-ingest", "mo-e2e", "mt")
PG_SETTINGS = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on",
               "shared_buffers": "128MB", "max_connections": "100"}
TARGET_PG_CPU = 1.5      # the issue: CPU per message on PostgreSQL <= 1.5 x SQLite's
TARGET_WORKERS = 1.3     # the issue: --workers 2 >= 1.3 x --workers 1


@dataclass
class Cell:
    config: str
    load: str
    run: int
    commit: str = ""
    pinning: str = ""
    rate: float = 0.0            # ingest: 2xx/s; e2e: delivered/s; mt: acknowledged/s
    p50_ms: float | None = None  # ingest: HTTP answer; e2e: stored -> at receiver;
    #                              mt: accepted -> sent
    p99_ms: float | None = None
    accept_rate: float = 0.0     # what wrk got answered (2xx/201) per second
    messages: int = 0            # messages done in the measured window (the CPU divisor)
    smshost_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    window_s: float = 0.0        # the CPU window (load, plus the drain for e2e and mt)
    other_cpu_pct: float = 0.0   # machine busy - smshost - postgres - load generator - receiver
    errors: int = 0
    acked: int = 0               # acknowledged to wrk (warm-up + measured)
    missing: int = 0             # acked MO not stored / accepted MT not sent
    duplicated: int = 0          # stored twice, or at the receiver/broker more than once
    not_delivered: int = 0       # acked but never at the receiver / the broker
    wrong: int = 0               # MO stored with another text or sender
    drain: dict[str, Any] = field(default_factory=dict)
    pgss: dict[str, Any] = field(default_factory=dict)
    log_lines: int = 0
    health_pids: list[int] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.acked > 0 and not (self.missing or self.duplicated or self.not_delivered
                                       or self.wrong)

    def us(self, cpu_s: float) -> float:
        return 1e6 * cpu_s / max(1, self.messages)


# -- report ---------------------------------------------------------------------------


def f0(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def f1(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def checks(c: Cell) -> str:
    if c.verified:
        return f"ok ({c.acked:,})"
    parts = [f"{n} {what}" for n, what in ((c.missing, "missing/not sent"),
             (c.duplicated, "duplicated"), (c.not_delivered, "not delivered"),
             (c.wrong, "wrong text")) if n]
    return "**" + (", ".join(parts) or "nothing acknowledged") + "**"


def table(cells: list[Cell]) -> str:
    lines = ["| load | config | rate/s | p50 ms | p99 ms | accepted/s | smshost µs/msg "
             "| postgres µs/msg | total µs/msg | smshost cpu % | postgres cpu % | other cpu % "
             "| errors | checks |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        pg = c.config != "sqlite"
        lines.append(
            f"| {c.load} | {c.config} | {f0(c.rate)} | {f1(c.p50_ms)} | {f1(c.p99_ms)} "
            f"| {f0(c.accept_rate)} | {f0(c.us(c.smshost_cpu_s))} "
            f"| {f0(c.us(c.pg_cpu_s)) if pg else '-'} | {f0(c.us(c.smshost_cpu_s + c.pg_cpu_s))} "
            f"| {f0(100 * c.smshost_cpu_s / max(1e-6, c.window_s))} "
            f"| {f0(100 * c.pg_cpu_s / max(1e-6, c.window_s)) if pg else '-'} "
            f"| {f0(max(0.0, c.other_cpu_pct))} | {c.errors:,} | {checks(c)} |")
    return "\n".join(lines)


def pick(cells: list[Cell], how: str) -> dict[str, float]:
    """One figure per (config, load) over the runs: ``best`` (the highest rate, the
    lowest CPU per message, each on its own) or ``median``."""
    rates = [c.rate for c in cells]
    total = [c.us(c.smshost_cpu_s + c.pg_cpu_s) for c in cells]
    sms = [c.us(c.smshost_cpu_s) for c in cells]
    pgs = [c.us(c.pg_cpu_s) for c in cells]
    if how == "best":
        return {"rate": max(rates), "total_us": min(total), "smshost_us": min(sms),
                "pg_us": min(pgs)}
    return {"rate": statistics.median(rates), "total_us": statistics.median(total),
            "smshost_us": statistics.median(sms), "pg_us": statistics.median(pgs)}


def summary(all_cells: list[Cell], how: str) -> tuple[str, list[str], dict[str, Any]]:
    by: dict[tuple[str, str], list[Cell]] = {}
    for c in all_cells:
        by.setdefault((c.load, c.config), []).append(c)
    fig = {key: pick(cells, how) for key, cells in by.items()}
    lines = [f"| load | config | rate/s ({how}) | smshost µs/msg | postgres µs/msg "
             "| total µs/msg | total / sqlite | rate / pg |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    verdict = []
    for load in LOADS:
        base, one = fig.get((load, "sqlite")), fig.get((load, "pg"))
        for config in CONFIGS:
            f = fig.get((load, config))
            if f is None:
                continue
            vs_sqlite = (f"{f['total_us'] / base['total_us']:.2f}"
                         if base and config != "sqlite" else "-")
            vs_pg = (f"{f['rate'] / one['rate']:.2f}"
                     if one and one["rate"] and config == "pg-w2" else "-")
            lines.append(f"| {load} | {config} | {f0(f['rate'])} | {f0(f['smshost_us'])} "
                         f"| {f0(f['pg_us']) if config != 'sqlite' else '-'} "
                         f"| {f0(f['total_us'])} | {vs_sqlite} | {vs_pg} |")
        if base and one:
            r = one["total_us"] / base["total_us"]
            verdict.append(f"{load}: CPU/msg PostgreSQL {r:.2f}x SQLite (target <= "
                           f"{TARGET_PG_CPU}): {'met' if r <= TARGET_PG_CPU else 'NOT met'}")
        two = fig.get((load, "pg-w2"))
        if one and two and one["rate"]:
            r = two["rate"] / one["rate"]
            verdict.append(f"{load}: --workers 2 {r:.2f}x --workers 1 (target >= "
                           f"{TARGET_WORKERS}): {'met' if r >= TARGET_WORKERS else 'NOT met'}")
    return "\n".join(lines), verdict, {f"{k[0]}/{k[1]}": v for k, v in fig.items()}


def pgss_report(cells: list[Cell]) -> str:
    out = []
    for c in cells:
        if not c.pgss:
            continue
        p = c.pgss
        out.append(f"\n{c.load} / {c.config} (run {c.run}): {p['calls_per_msg']} statements "
                   f"per message, {p['exec_us_per_msg']} µs of execution per message")
        out.append("| calls/msg | µs/msg | µs/call | statement |\n|---:|---:|---:|---|")
        out.extend(f"| {t['calls_per_msg']} | {t['exec_us_per_msg']} | {t['us_per_call']} "
                   f"| `{t['query'].replace('|', '/')}` |" for t in p["top"])
    return "\n".join(out)
