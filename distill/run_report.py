"""One static HTML page per run (RUN_DIR/report.html): stages, funnel, plots, training, scores.

Self-contained: the PNGs are embedded as data URIs and there is no script or stylesheet to fetch, so
the file can be mailed, attached to an issue or opened from an air-gapped machine.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import Recipe, dump_yaml
from distill.eval.table import rows as score_rows
from distill.files import atomic_write_text, shown_path
from distill.layout import RunLayout


@dataclass
class StageReport:
    """One stage of a `distill run`. This and `RunSummary`, what `distill run` returns, live here, below the
    pipeline (which re-exports them), because the report renders them and must not import the pipeline."""

    name: str
    status: str                   # ran | resumed | skipped | not configured
    key: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    run_dir: Path
    stages: list[StageReport]
    funnel: list[dict[str, Any]] | None = None
    training: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    dataset_card: Path | None = None
    model_card: Path | None = None
    report: Path | None = None
    wall_s: float = 0.0

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.name == name)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.num{text-align:right}img{max-width:100%;border:1px solid #eee}
.good{color:#176317;font-weight:600}.bad{color:#9b1c1c;font-weight:600}code,pre{background:#f6f6f6}
pre{padding:8px;overflow:auto}
"""


def _img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).exists():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for value in row:
            css = ' class="num"' if isinstance(value, (int, float)) else ""
            text = html.escape(str(value))
            if isinstance(value, str) and value.endswith(" better"):
                text = f'<span class="good">{text}</span>'
            elif isinstance(value, str) and value.endswith(" worse"):
                text = f'<span class="bad">{text}</span>'
            cells.append(f"<td{css}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def render(recipe: Recipe, summary: RunSummary) -> str:
    parts = [f"<h1>distill run: {html.escape(recipe.name)}</h1>"]
    if recipe.description:
        parts.append(f"<p>{html.escape(recipe.description)}</p>")
    parts.append(f"<p>run directory <code>{html.escape(Path(summary.run_dir).name)}</code> (the folder holding "
                 f"this report; paths below are relative to it); this invocation took {summary.wall_s:.0f} s.</p>")
    parts.append("<h2>Stages</h2>")
    parts.append(_table(["stage", "status", "seconds", "key"],
                        [[s.name, s.status, s.seconds, s.key] for s in summary.stages]))

    layout = RunLayout.of(recipe)
    filter_dir = layout.filter_dir
    if summary.funnel:
        parts.append("<h2>Filter funnel</h2><p>Each rejected trace is counted at the first check it failed.</p>")
        parts.append(_table(["step", "removed", "remaining"],
                            [[r["stage"], r.get("removed", ""), r["remaining"]] for r in summary.funnel]))
        parts.append(_img(filter_dir / "plots" / "token_lengths.png", "trace lengths"))
        parts.append(_img(filter_dir / "plots" / "reject_reasons.png", "reject reasons"))

    curve = layout.training_curve("sft")
    if summary.training is not None or curve.exists():
        parts.append("<h2>Training</h2>")
        parts.append(_img(curve, "training curve"))
        if summary.training:
            # Scalars as a table; the nested reports (data, packing check) stay in student/metrics.json.
            scalars = [[k, v] for k, v in summary.training.items() if isinstance(v, (int, float, str))]
            parts.append(_table(["metric", "value"], scalars))

    if summary.scores:
        s = summary.scores
        parts.append("<h2>Evaluation</h2>")
        parts.append(f"<p>k={s['k']} samples a problem, temperature {s['sampling']['temperature']}, top-p "
                     f"{s['sampling']['top_p']}, at most {s['sampling']['max_tokens']} tokens. pass@1 is the mean "
                     "over the k samples, pass@j the unbiased estimator, cons@k the majority vote; intervals "
                     "are 95% (bootstrap over problems, Wilson for 0/1 scores); the difference column is "
                     "paired over the same problems.</p>")
        header, body = score_rows(s)
        parts.append(_table(header, body))
        # A bundled or hub model loads from this machine's cache: its name says more than the folder.
        models = [[label, meta["model"], shown_path(meta["path"], summary.run_dir)
                   if Path(meta["path"]).resolve().is_relative_to(Path(summary.run_dir).resolve()) else "-"]
                  for label, meta in s.get("models", {}).items()]
        parts.append(_table(["label", "model", "folder in this run"], models))

    links = [(name, path) for name, path in (("dataset card", summary.dataset_card),
                                             ("model card", summary.model_card)) if path]
    if links:
        parts.append("<h2>Cards</h2><ul>" + "".join(
            f"<li>{html.escape(n)}: <code>{html.escape(shown_path(p, summary.run_dir))}</code></li>"
            for n, p in links) + "</ul>")
    parts.append("<h2>Recipe</h2><pre>" + html.escape(dump_yaml(recipe)) + "</pre>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>distill: {html.escape(recipe.name)}"
            f"</title><style>{STYLE}</style></head><body>" + "\n".join(p for p in parts if p) + "</body></html>\n")


def write_report(recipe: Recipe, summary: RunSummary) -> Path:
    path = RunLayout.of(recipe).report_file
    atomic_write_text(path, render(recipe, summary))
    return path
