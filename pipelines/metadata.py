"""Markdown tables for the Dagster UI."""

from __future__ import annotations

from collections.abc import Mapping


def counts_table(counts: Mapping, key: str) -> str:
    rows = "".join(f"| {k} | {v} |\n" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))
    return f"| {key} | count |\n|---|---|\n{rows}" if rows else "nothing"


def balance_table(report: Mapping) -> str:
    stats = ("cells", "images", "gini", "entropy", "top1pct_share")
    rows = "".join(f"| {s} | {report['before'][s]} | {report['after'][s]} |\n" for s in stats)
    return f"| statistic | before | after |\n|---|---|---|\n{rows}"
