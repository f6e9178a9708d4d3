"""Markdown tables for the Dagster UI."""

from __future__ import annotations

from collections.abc import Mapping


def counts_table(counts: Mapping, key: str) -> str:
    rows = "".join(f"| {k} | {v} |\n" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))
    return f"| {key} | count |\n|---|---|\n{rows}" if rows else "nothing"


def accounting_totals(accounts: Mapping) -> dict[str, int]:
    """listed = stored + rejected + to_retry, over every source of the region."""
    keys = ("listed", "stored", "rejected", "to_retry")
    return {key: sum(getattr(a, key) for a in accounts.values()) for key in keys}


def accounting_table(accounts: Mapping) -> str:
    """Per source: where every candidate listed by the run ended."""
    rows = "".join(f"| {src} | {a.listed} | {a.stored} | {a.rejected} | {a.to_retry} |\n"
                   for src, a in sorted(accounts.items()))
    return f"| source | listed | stored | rejected (final) | to retry next run |\n|---|---|---|---|---|\n{rows}"


def balance_table(report: Mapping) -> str:
    stats = ("cells", "images", "gini", "entropy", "top1pct_share")
    rows = "".join(f"| {s} | {report['before'][s]} | {report['after'][s]} |\n" for s in stats)
    return f"| statistic | before | after |\n|---|---|---|\n{rows}"
