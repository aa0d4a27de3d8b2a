"""The hf backend on the bundled tiny model: traces, stats, reproducibility, resume, shards, kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.config import GenerateConfig, config_hash
from distill.generation import generate
from distill.generation.prompts import build_messages
from distill.generation.shards import expected_keys, merge_shards
from distill.jsonl import read_jsonl
from distill.records import Problem, Trace

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def write_problems(path: Path, count: int) -> Path:
    with open(GSM8K, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        for index, line in zip(range(count), source):
            row = json.loads(line)
            problem = Problem(id=f"gsm8k-test-{index}", problem=row["question"], source="gsm8k",
                              answer=row["answer"].rsplit("####", 1)[-1].strip())
            out.write(json.dumps(problem.to_json()) + "\n")
    return path


def hf_config(tmp_path: Path, name: str, problems: Path, **changes) -> GenerateConfig:
    data = {"backend": "hf", "model": "bundled:tiny", "problems": str(problems),
            "output": str(tmp_path / f"{name}.jsonl"), "sampling": {"n": 2, "max_tokens": 8},
            "hf": {"batch_size": 4}}
    for key, value in changes.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return GenerateConfig.model_validate(data)


def traces_of(path: Path) -> list[Trace]:
    return list(read_jsonl(path, Trace))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matmuls are microseconds: a second OpenMP thread only adds spin-waits (10x slower
    on a loaded 2-core box). Restored after this module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def problems(tmp_path_factory, tiny_model) -> Path:
    return write_problems(tmp_path_factory.mktemp("problems") / "problems.jsonl", 3)


def test_hf_writes_r1_traces_and_stats(tmp_path, problems):
    config = hf_config(tmp_path, "traces", problems)
    result = generate(config, progress=True)
    traces = traces_of(result.output)
    assert sorted(t.key for t in traces) == sorted(expected_keys(problems, 2))
    assert result.written == 6 and result.skipped == 0
    by_id = {p.id: p for p in read_jsonl(problems, Problem)}
    for trace in traces:
        assert trace.teacher == "bundled:tiny" and trace.config_hash == config_hash(config)
        assert trace.prompt == build_messages(by_id[trace.problem_id], config.prompts)
        assert 0 < trace.completion_tokens <= 8 and trace.prompt_tokens > 50
        assert trace.finish_reason == ("length" if trace.completion_tokens == 8 else "stop")
        # The prompt was prefilled with <think>: a random model never closes it, so all is reasoning.
        assert trace.reasoning == trace.completion.strip() and trace.answer == ""
    stats = json.loads(result.stats_path.read_text())
    assert result.stats_path == tmp_path / "traces.stats.json" and stats == result.stats
    assert stats["traces"] == 6 and stats["problems"] == 3
    assert stats["completion_tokens"]["total"] == sum(t.completion_tokens for t in traces)
    assert stats["truncation_rate"] == sum(t.finish_reason == "length" for t in traces) / 6
    assert stats["run"]["written"] == 6 and stats["run"]["output_tokens_per_s"] > 0

    # A rerun finds every (problem, sample) written and loads no model.
    again = generate(config, progress=False)
    assert (again.written, again.skipped) == (0, 6) and again.stats["run"]["load_s"] == 0
    assert traces_of(result.output) == traces


def test_hf_same_seed_same_traces(tmp_path, problems):
    first = traces_of(generate(hf_config(tmp_path, "a", problems), progress=False).output)
    # Another batch layout (one request per forward pass, no padding): still the same traces, because
    # each (problem, sample) draws from its own stream, not from a generator shared by the batch.
    second = traces_of(generate(hf_config(tmp_path, "b", problems, **{"hf.batch_size": 1}), progress=False).output)
    other = traces_of(generate(hf_config(tmp_path, "c", problems, **{"sampling.seed": 1}), progress=False).output)
    assert [t.completion for t in first] == [t.completion for t in second]
    assert [t.completion for t in first] != [t.completion for t in other]
    # The n samples of one problem differ from each other: each has its own stream.
    assert len({t.completion for t in first}) == len(first)


def test_a_rerun_with_nothing_left_to_do_draws_no_bar(tmp_path, problems, capfd):
    config = hf_config(tmp_path, "bar", problems)
    generate(config, progress=True)
    assert "generate" in capfd.readouterr().err  # the bar, on stderr
    again = generate(config, progress=True)
    assert again.written == 0 and "generate" not in capfd.readouterr().err  # not an empty "0/0" bar


def test_shards_merge_into_the_unsharded_run(tmp_path, tiny_model):
    problems = write_problems(tmp_path / "problems.jsonl", 5)  # shard_of puts 4 in shard 1/2, 1 in 0/2
    # batch_size 1 keeps every forward pass the same shape, so sharded and whole runs match byte for byte.
    one = {"hf.batch_size": 1, "sampling.n": 1}
    whole = generate(hf_config(tmp_path, "whole", problems, **one), progress=False)
    parts = [generate(hf_config(tmp_path, f"part{k}", problems, shard=f"{k}/2", **one), progress=False).output
             for k in range(2)]
    assert sorted(len(traces_of(p)) for p in parts) == [1, 4]
    report = merge_shards(parts, tmp_path / "merged.jsonl", expected_keys(problems, 1))
    assert report["complete"] and report["written"] == 5 and report["duplicates"] == 0
    merged = {t.key: t for t in traces_of(tmp_path / "merged.jsonl")}
    assert merged == {t.key: t for t in traces_of(whole.output)}


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_kill_9_then_rerun_gives_every_trace_once(tmp_path, tiny_model):
    problems = write_problems(tmp_path / "problems.jsonl", 12)
    output = tmp_path / "traces.jsonl"
    command = [sys.executable, "-m", "distill.generation", "backend=hf", "model=bundled:tiny",
               f"problems={problems}", f"output={output}", "sampling.n=2", "sampling.max_tokens=24",
               "hf.batch_size=2", "batch_size=1", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = tmp_path / "generate.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and process.poll() is None:
                if output.exists() and output.stat().st_size > 0:
                    break
                time.sleep(0.05)
            assert process.poll() is None, log.read_text()[-2000:]  # still running: the kill lands mid-run
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    before = output.read_text().splitlines()
    assert 0 < len(before) < 24  # killed mid-run, after some traces were written
    for line in before:
        Trace.model_validate_json(line)  # whole lines only, never half a record

    config = hf_config(tmp_path, "traces", problems, **{"sampling.max_tokens": 24, "hf.batch_size": 2})
    result = generate(config, progress=False)
    lines = output.read_text().splitlines()
    traces = [Trace.model_validate_json(line) for line in lines]
    assert len(traces) == 24 and len({t.key for t in traces}) == 24
    assert {t.key for t in traces} == set(expected_keys(problems, 2))
    assert result.skipped == len(before) and result.written == 24 - len(before)
    assert lines[:len(before)] == before  # what survived the kill was kept, not rewritten


def test_data_parallel_workers_split_the_run_and_merge(tmp_path, problems, monkeypatch):
    """The vllm backend's data parallelism is process orchestration: D workers on finer shards, then a
    merge. It is backend-agnostic, so it runs here on hf workers (two vLLM engines would not fit the box)."""
    from distill.generation.parallel import generate_data_parallel

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = hf_config(tmp_path, "dp", problems, **{"vllm.data_parallel_size": 2})
    result = generate_data_parallel(config, problems=None, progress=False)
    traces = traces_of(result.output)
    assert sorted(t.key for t in traces) == sorted(expected_keys(problems, 2))
    parts = [tmp_path / f"dp.dp{d}of2.jsonl" for d in range(2)]
    assert sum(len(traces_of(p)) for p in parts) == 6  # each pair written once, by one worker
    assert result.written == 6 and result.stats["traces"] == 6
    assert {t.config_hash for t in traces} == {config_hash(config)}
    single = traces_of(generate(hf_config(tmp_path, "single", problems), progress=False).output)
    assert {t.key: t.completion for t in traces} == {t.key: t.completion for t in single}
