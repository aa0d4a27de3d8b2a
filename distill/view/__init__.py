"""`distill view RUN_DIR`: a local web page over a run's files (problems, samples, verdicts, eval, plots).

    layout.py   where a run directory keeps each file (manifests first, the recipe defaults second)
    lines.py    JSONL files read by byte offset: an index built in one pass, pages read by seeking
    queries.py  what the page asks for: overview, problems, samples (filter, search), eval side by side
    server.py   the stdlib HTTP server: JSON under /api/, the PNGs, and the page in static/

Nothing is copied or loaded whole: each request reads only the lines of the page it shows, so a run with
100k traces opens as fast as a small one (after one indexing pass per file, kept until the file changes).
"""
from distill.view.server import serve

__all__ = ["serve"]
