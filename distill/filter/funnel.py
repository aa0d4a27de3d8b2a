"""The funnel as a rich table, for the CLI to print after `filter_traces`."""
from __future__ import annotations

from rich.table import Table

from distill.filter.stage import FilterResult


def funnel_table(result: FilterResult) -> Table:
    """One row per stage that removed traces (first failing check wins), one column per domain."""
    stats = result.stats
    domains = sorted(stats.get("per_domain", {}))
    table = Table(title=f"filter: kept {result.kept} of {result.kept + result.rejected} -> {result.output_dir}")
    table.add_column("stage")
    table.add_column("removed", justify="right")
    table.add_column("remaining", justify="right")
    for domain in domains:
        table.add_column(f"{domain} removed", justify="right")
    per_domain = {d: {row["stage"]: row.get("removed", 0) for row in stats["per_domain"][d]["funnel"]}
                  for d in domains}
    for row in stats.get("funnel", []):
        cells = [row["stage"], str(row.get("removed", "")), str(row["remaining"])]
        cells += [str(per_domain[d].get(row["stage"], 0)) if row["stage"] != "input" else
                  str(stats["per_domain"][d]["total"]) for d in domains]
        table.add_row(*cells)
    return table
