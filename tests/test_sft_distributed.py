"""`accelerate launch` with two CPU processes: the same result as one process with the same global batch.

accelerate 1.15's `--cpu` flag always uses its single-process launcher (multi-CPU there means mpirun), so
the two ranks are started with `--multi_gpu`, which runs torchrun; with no GPU, distill asks for a CPU
process group (gloo) and the ranks split each global batch between them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from test_sft_support import read_log, tiny_config, write_traces

from distill.sft import train


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "cache" not in p.parts}


def test_two_processes_match_one_process_and_only_rank0_writes(tmp_path):
    write_traces(tmp_path / "kept.jsonl", 16)
    common = {"method": "full", "precision": "fp32", "max_steps": 3, "max_length": 384, "learning_rate": 1e-3,
              "gradient_accumulation_steps": 1}
    single = train(tiny_config(tmp_path, "one", per_device_batch_size=2, **common), progress=False)

    ddp_dir = tmp_path / "two"
    overrides = [f"{k}={v}" for k, v in {**common, "model": "bundled:tiny", "train_file": tmp_path / "kept.jsonl",
                                         "output_dir": ddp_dir, "per_device_batch_size": 1, "eval_fraction": 0,
                                         "warmup_ratio": 0.0, "save_steps": 100, "merge": False}.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", "29517", "-m", "distill.sft", *overrides, "--no-progress"]
    run = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    metrics = json.loads((ddp_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # Same global batch, same data order: the same curve and the same weights.
    one, two = read_log(single.log_path), read_log(ddp_dir / "log.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3]  # one row per step: rank 1 logged nothing
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) < 1e-4 and a["tokens"] == b["tokens"]
    weights_one = load_file(single.merged_dir / "model.safetensors")
    weights_two = load_file(ddp_dir / "model" / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, atol=1e-5, rtol=1e-4)
    # Rank 1 wrote nothing of its own: the two runs left the same files, except that transformers saves
    # every rank's RNG state in a checkpoint (what an exact resume of that rank needs).
    rng = {"checkpoints/checkpoint-3/rng_state_0.pth", "checkpoints/checkpoint-3/rng_state_1.pth"}
    assert _files(ddp_dir) - rng == _files(single.output_dir) - {"checkpoints/checkpoint-3/rng_state.pth"}
    assert rng <= _files(ddp_dir)
