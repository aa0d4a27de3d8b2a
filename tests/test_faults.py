"""Faults for real: SIGKILL of a `distill sft` process mid-training and of `distill eval` mid-verification,
and a disk that fills up while `distill generate` writes traces. Each fault hits a real CLI subprocess."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SUITE_VLLM
from data_shapes import humaneval_problem, humaneval_rows
from processes import kill_when
from test_generate_hf import write_problems
from test_sft_support import read_log, tiny_config, write_traces

from distill.config import EvalConfig, GenerateConfig, dump_yaml
from distill.generation import generate
from distill.records import Trace
from distill.sft import train

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "distill.cli"]
pytestmark = pytest.mark.slow


def lines(path: Path) -> list[dict]:
    """Every line of `path`, each required to be whole JSON."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]



def run_ok(command: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    assert done.returncode == 0, log.read_text()[-3000:]


@pytest.mark.parametrize("logit_kd", [None, {"teacher": "bundled:tiny"}], ids=["sft", "sft-logit-kd"])
def test_sigkill_of_distill_sft_mid_training_resumes_to_the_same_curve(tmp_path: Path, logit_kd):
    write_traces(tmp_path / "kept.jsonl", 24)
    settings = {"max_steps": 6, "save_steps": 2, **({"logit_kd": logit_kd} if logit_kd else {})}
    straight = train(tiny_config(tmp_path, "straight", **settings), progress=False)
    config = tiny_config(tmp_path, "killed", **settings)
    (tmp_path / "sft.yaml").write_text(dump_yaml(config))
    command = [*CLI, "sft", str(tmp_path / "sft.yaml")]
    checkpoint = config.output_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    log_rows = config.output_dir / "log.jsonl"
    # Killed while step 3 or later runs: the step-2 checkpoint (and the teacher's store) is on disk, the run is not
    # finished.
    kill_when(command, lambda: checkpoint.exists() and len(lines(log_rows)) >= 3, tmp_path / "sft.log")
    assert not (config.output_dir / "result.json").exists()
    run_ok(command, tmp_path / "sft.log")
    rows = read_log(config.output_dir / "log.jsonl")
    expected = read_log(straight.log_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # steps after the checkpoint redone, none twice
    for name in ("loss", "kd_kl", "kd_ce") if logit_kd else ("loss",):
        assert [r[name] for r in rows] == pytest.approx([r[name] for r in expected], abs=1e-4), name
    metrics = json.loads((config.output_dir / "result.json").read_text())["metrics"]
    assert metrics["resumed_from_step"] >= 2
    if logit_kd:
        assert metrics["logit_kd"]["reused"] is True  # the store scored before the kill is not scored again


def _slow_code_answers(traces: Path, rows: dict[str, dict]) -> None:
    """Rewrite the sampled answers as right solutions that take a while, keys unchanged."""
    records = []
    for record in lines(traces):
        row = rows[record["problem_id"]]
        code = f"import time\ntime.sleep(0.1)\n{row['prompt']}{row['canonical_solution']}"
        answer = f"```python\n{code}```"
        records.append({**Trace.model_validate(record).to_json(), "answer": answer,
                        "completion": f"Thinking.\n</think>\n\n{answer}", "reasoning": "Thinking."})
    traces.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_sigkill_of_distill_eval_during_verification_resumes(tmp_path: Path):
    rows = {r["task_id"]: r for r in humaneval_rows(5)}
    problems = tmp_path / "he.jsonl"
    problems.write_text("".join(json.dumps(humaneval_problem(r).to_json()) + "\n" for r in rows.values()))
    config = EvalConfig.model_validate({
        "models": ["bundled:tiny"], "benchmarks": [{"name": "he", "path": str(problems)}], "k": 16,
        "backend": "hf", "sampling": {"max_tokens": 8, "seed": 0}, "hf": {"batch_size": 16},
        "output_dir": str(tmp_path / "eval"), "sandbox": {"timeout_s": 10}})
    (tmp_path / "eval.yaml").write_text(dump_yaml(config))
    command = [*CLI, "eval", str(tmp_path / "eval.yaml")]
    log = tmp_path / "eval.log"
    run_ok(command, log)  # samples from the random model: no code, nothing passes
    [traces] = list((tmp_path / "eval").glob("*/he.traces.jsonl"))
    verdicts = traces.with_name("he.verdicts.jsonl")
    _slow_code_answers(traces, rows)
    verdicts.unlink()
    # 80 samples, 64 verdicts a batch: killed after the first batch reached disk, inside the second.
    kill_when(command, lambda: len(lines(verdicts)) >= 64, log)
    assert 64 <= len(lines(verdicts)) < 80
    run_ok(command, log)
    written = lines(verdicts)
    keys = [f"{v['problem_id']}#{v['sample']}" for v in written]
    assert len(keys) == len(set(keys)) == 80  # none lost, none twice
    assert all(v["passed"] for v in written), [v["detail"] for v in written if not v["passed"]][:3]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())["scores"]
    assert next(iter(scores.values()))["he"]["pass@1"]["value"] == 1.0


def _mount_small_tmpfs(target: Path) -> bool:
    target.mkdir()
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, b"size=48k") == 0


def test_full_disk_while_writing_traces_keeps_every_line_whole_and_says_so(tmp_path: Path):
    disk = tmp_path / "small-disk"
    mounted = _mount_small_tmpfs(disk)
    try:
        config = GenerateConfig.model_validate({
            "backend": "hf", "model": "bundled:tiny", "problems": str(write_problems(tmp_path / "p.jsonl", 40)),
            "output": str(disk / "traces.jsonl"), "sampling": {"n": 2, "max_tokens": 8}, "hf": {"batch_size": 8}})
        (tmp_path / "generate.yaml").write_text(dump_yaml(config))
        command = [*CLI, "generate", str(tmp_path / "generate.yaml")]
        if not mounted:  # no mount allowed here: a 48 KiB file size limit makes the kernel refuse (EFBIG)
            command = ["bash", "-c", "trap '' XFSZ; ulimit -f 96; exec " + " ".join(command)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        message = done.stdout + done.stderr
        assert done.returncode == 2, message[-3000:]
        assert "lines in the file are all whole" in message and "Traceback" not in message
        written = lines(disk / "traces.jsonl")  # every line parses
        assert 0 < len(written) < 80
        assert all(Trace.model_validate(r).completion is not None for r in written)
        assert f"the {len(written)} lines" in " ".join(message.split())
    finally:
        if mounted:
            ctypes.CDLL(None, use_errno=True).umount2(str(disk).encode(), 2)


@pytest.mark.vllm
def test_vllm_engine_killed_mid_generation_stops_with_a_plain_error_and_resumes(tmp_path: Path, vllm_engine):
    """What the out-of-memory killer does to a busy machine: the engine process vanishes mid-run.

    The killed run is a CLI subprocess; the rerun resumes in this process on the suite's shared engine (same
    model and engine settings), which saves a fresh engine's ~50 s start and resumes all the same."""
    import os
    import signal
    import time

    import psutil

    output = tmp_path / "traces.jsonl"
    config = GenerateConfig.model_validate({
        "backend": "vllm", "model": "bundled:smollm2-135m-instruct",
        "problems": str(write_problems(tmp_path / "p.jsonl", 12)), "output": str(output),
        "sampling": {"n": 2, "max_tokens": 32}, "batch_size": 4,
        "vllm": SUITE_VLLM.model_dump()})
    (tmp_path / "generate.yaml").write_text(dump_yaml(config))
    command = [*CLI, "generate", str(tmp_path / "generate.yaml")]
    log = tmp_path / "generate.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 600
        while not lines(output) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # The OOM killer picks the largest process: the model worker, not the engine core that drives it.
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "VLLM::Worker"]
        assert workers and proc.poll() is None, log.read_text()[-3000:]
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        proc.wait(timeout=300)
    message = log.read_text()
    assert proc.returncode == 2, message[-3000:]
    # The engine core's own process reports the loss on stderr; distill itself ends in one paragraph.
    assert "died mid-run" in message and "EngineDeadError" not in message, message[-3000:]
    written = lines(output)
    assert 0 < len(written) < 24
    resumed = generate(config, progress=False)
    assert resumed.written == 24 - len(written) and resumed.skipped == len(written)
    finished = lines(output)
    assert len(finished) == 24 and finished[:len(written)] == written
