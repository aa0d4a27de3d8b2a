"""The GPU check (bench/gpu/check.py) rehearsed on the CPU with a 2-layer model, as `make gpu-check-rehearse`
runs it: every part's code runs, so the script a GPU session runs in one command cannot rot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_rehearses_every_part_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu" / "check.py"), "--rehearse", "--results",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((tmp_path / "gpu.json").read_text())["runs"][-1]
    parts = run["parts"]
    failed = {name: p.get("error") for name, p in parts.items() if "error" in p}
    assert not failed, failed
    assert set(parts) == {"model", "peak", "sft:distill-full", "sft:trl-defaults", "sft:distill-lora",
                          "sft:distill-qlora", "sft:distill-full-nondeterministic", "sft:distill-full-liger-off",
                          "grpo:distill", "grpo:trl-defaults", "generate"}
    skipped = {name for name, p in parts.items() if "skipped" in p}
    assert skipped <= {"sft:distill-full-liger-off"}  # liger does not run without CUDA
    for name in ("sft:distill-full", "sft:distill-lora", "sft:distill-qlora", "sft:trl-defaults"):
        assert parts[name]["tokens_per_s"] > 0 and parts[name]["mfu"] > 0, name
    assert parts["sft:distill-full"]["packing_check"]["rows"] == 2  # the trainer's collator, two rows
    assert parts["sft:distill-full"]["dry_run_gib"] > 0
    assert parts["grpo:distill"]["rollout"] == "transformers"
    assert parts["grpo:distill"]["seconds_per_step"] > 0 < parts["grpo:trl-defaults"]["seconds_per_step"]
    assert parts["generate"]["output_tokens_per_s"] > 0
    assert {"sft_speedup_vs_trl", "sft_full_mfu", "grpo_speedup_vs_trl", "deterministic_cost"} <= set(run["verdict"])
    assert "| sft:distill-full |" in (tmp_path / "gpu.md").read_text()
