"""Figures: the one place that picks matplotlib's file-only backend, draws per-step curves and writes PNGs.

SFT's loss plot, RL's reward plot and the model card's training curve are the same drawing (one panel a
group of logged keys against the step), so they share `plot_curves`; the cards' histograms use `pyplot` and
`save_figure` directly.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

Panel = tuple[str, Sequence[str]]  # title, the logged keys drawn in it


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, png_path: str | Path) -> Path:
    """Lay out, write as PNG renamed into place (a reader never sees half an image), and free the figure."""
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(png_path)
    pyplot().close(fig)
    return png_path


def plot_curves(rows: list[dict[str, Any]], panels: Sequence[Panel], png_path: str | Path, *,
                markers: Sequence[str] = ()) -> Path:
    """One panel per (title, keys), each key a line against `step` (a panel stays empty where no row has
    its keys). Short curves and the keys in `markers` (sparse ones such as eval_loss) get point markers.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels) + 1, 3.6), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        drawn = 0
        for key in keys:
            points = [(row.get("step", i), row[key]) for i, row in enumerate(rows) if key in row]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if key in markers or len(points) < 30 else None, markersize=3,
                        label=key)
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if drawn > 1:
            ax.legend(fontsize=7)
    return save_figure(fig, png_path)
