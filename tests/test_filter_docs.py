"""The custom-filter example in docs/filter.md (pasted into the README) runs as written and does what it says."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "filter.md"


def test_custom_filter_example_runs(tmp_path: Path):
    example = next(block for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
                   if block.startswith("# custom_filter.py"))
    script = tmp_path / "custom_filter.py"
    script.write_text(example)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "kept 2, rejected 3"
    assert lines[:-1] == ["1 ['no_hedging']", "2 ['math_verify']", "4 ['at_most_two_per_teacher']"]
    assert (tmp_path / "filtered" / "stats.json").exists()
