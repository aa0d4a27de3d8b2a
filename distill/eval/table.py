"""Models side by side: one row per benchmark x metric, one column per model, 95% intervals inline.

Both renderers read the scores.json document, so the terminal table, the model card and the HTML
report always show the same numbers.
"""
from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table


def metric_names(document: dict[str, Any]) -> list[str]:
    """pass@1, pass@2, ... pass@k, cons@k, in that order, as present in the scores."""
    seen: list[str] = []
    for per_bench in document["scores"].values():
        for bench_scores in per_bench.values():
            for name, value in bench_scores.items():
                if isinstance(value, dict) and "value" in value and name not in seen:
                    seen.append(name)
    passes = sorted((m for m in seen if m.startswith("pass@")), key=lambda m: int(m.split("@")[1]))
    return passes + [m for m in seen if not m.startswith("pass@")]


def cell(score: dict[str, Any] | None) -> str:
    if not score:
        return "-"
    return f"{score['value']:.3f} [{score['ci_low']:.3f}, {score['ci_high']:.3f}]"


def delta_cell(delta: dict[str, Any] | None) -> str:
    if not delta:
        return ""
    value, low, high = delta["value"], delta["ci_low"], delta["ci_high"]
    verdict = "better" if low > 0 else "worse" if high < 0 else "no clear change"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}"


def rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and body shared by both renderers."""
    labels = list(document["scores"])
    benches = list(document["benchmarks"])
    deltas = document.get("deltas", {})
    header = ["benchmark", "metric", *labels]
    compared = [label for label in labels if label in deltas]
    header += [f"{label} - {deltas[label][benches[0]]['against']} (pass@1, paired)" for label in compared]
    body = []
    for bench in benches:
        for metric in metric_names(document):
            row = [bench, metric] + [cell(document["scores"][label].get(bench, {}).get(metric)) for label in labels]
            for label in compared:
                row.append(delta_cell(deltas[label].get(bench, {}).get("pass@1")) if metric == "pass@1" else "")
            body.append(row)
    return header, body


def scores_table(document: dict[str, Any]) -> Table:
    """The terminal table, laid out to read at 80 columns for two models: one benchmark goes in the title
    instead of a column, a difference's verdict goes under its interval, and the box has no side rules."""
    header, body = rows(document)
    compared = len(header) - 2 - len(document["scores"])  # the difference columns, last
    benches = list(document["benchmarks"])
    if len(benches) == 1:
        header, body = header[1:], [row[1:] for row in body]
    on = f"'{benches[0]}', " if len(benches) == 1 else ""
    sampling = document["sampling"]
    table = Table(title=f"evaluation: {on}k={document.get('k')}, T={sampling['temperature']}, "
                        f"top-p={sampling['top_p']}; value [95% CI]", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in header:
        table.add_column(name, overflow="fold")
    for row in body:
        cells = row[:len(row) - compared] + [cell.replace("] ", "]\n", 1) for cell in row[len(row) - compared:]]
        table.add_row(*cells)
    return table


def markdown_table(document: dict[str, Any]) -> str:
    header, body = rows(document)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"
