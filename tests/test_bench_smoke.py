"""Every bench/ script runs end to end with its smallest arguments and writes its results file.

A benchmark that fails before measuring anything cannot back the README's table, so each one gets a smoke
run here: tiny models, a few rows, one or two steps, results written to a temporary folder
(DISTILL_BENCH_RESULTS) so the committed figures in bench/results/ are never touched.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = [pytest.mark.slow, pytest.mark.vllm]  # each starts its own vLLM engine in a subprocess

SMOKE_RUNS = [
    pytest.param("filter.py", ["--problems", "4", "--samples", "4", "--programs", "4"], ["filter.json", "filter.md"],
                 id="filter"),
    pytest.param("determinism.py", ["--steps", "1", "--repeats", "1"], ["determinism.json", "determinism.md"],
                 id="determinism"),
    pytest.param("sft.py", ["--model", "bundled:tiny", "--memory-model", "bundled:tiny", "--examples", "10",
                            "--held-out", "2", "--repeats", "1", "--skip-memory", "--max-length", "256",
                            "--rows", "2"], ["sft.json", "sft.md"], id="sft", marks=pytest.mark.slow),
    pytest.param("gemma_student.py", ["--student", "bundled:tiny", "--template", "none", "--reference",
                                      "bundled:tiny", "--steps", "1", "--skip-vllm"], ["gemma_student.json"],
                 id="gemma_student", marks=pytest.mark.slow),
    pytest.param("kd.py", ["--student", "bundled:tiny", "--teacher", "bundled:tiny", "--steps", "2", "--prompts", "2",
                           "--tokens", "8", "--contenders", "trl,distill-overlap"], ["kd.json", "kd.md"], id="kd",
                 marks=HEAVY),
    pytest.param("rl.py", ["--model", "bundled:tiny", "--steps", "2"], ["rl.json", "rl.md"], id="rl", marks=HEAVY),
    pytest.param("demo.py", ["--quick", "generate.limit=16", "generate.sampling.max_tokens=96", "sft.epochs=1",
                             "eval.k=1", "eval.benchmarks=" + json.dumps(
                                 [{"name": "demo-heldout", "path": str(ROOT / "data" / "demo" / "eval.jsonl"),
                                   "limit": 8}])], ["demo.json", "demo.md"], id="demo", marks=HEAVY),
    pytest.param("generate.py", ["--problems", "2", "--n", "1", "--max-tokens", "8", "--hf-problems", "1",
                                 "--kv-cache-gib", "1"], ["generate.json", "generate.md"], id="generate", marks=HEAVY),
]


def run_bench(script: str, args: list[str], results: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTILL_BENCH_RESULTS": str(results), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.parametrize(("script", "args", "written"), SMOKE_RUNS)
def test_bench_script_writes_its_results(script, args, written, tmp_path, tiny_model):
    done = run_bench(script, args, tmp_path)
    assert done.returncode == 0, f"bench/{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    for name in written:
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 0, f"bench/{script} did not write {name}"
        if name.endswith(".json"):
            assert json.loads(path.read_text()), f"bench/{script} wrote an empty {name}"


def test_every_bench_script_has_a_smoke_run():
    """A new bench script without a smoke run here fails this test, so no benchmark can rot unseen."""
    covered = {p.values[0] for p in SMOKE_RUNS}
    helpers = {"cpu.py"}  # imported by the others, measured through them
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - helpers
    assert scripts <= covered, f"bench scripts without a smoke run: {sorted(scripts - covered)}"
