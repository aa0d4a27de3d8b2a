"""`executor: ray` on a local Ray cluster: 2 replicas of the tiny model, a replica killed mid-run, the
driver killed mid-run, and filter verification on Ray actors; always the traces of a one-machine run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray  # the ray extra; `make test` installs it
from test_generate_hf import hf_config, traces_of, write_problems

from distill.generation import generate
from distill.jsonl import count_lines

# batch_size 1 keeps every forward pass the same shape, so any replica gives byte-identical traces.
COMMON = {"hf.batch_size": 1, "sampling.n": 2, "sampling.max_tokens": 32}
RAY = {"executor": "ray", "ray.replicas": 2, "ray.num_cpus": 1, "ray.chunk": 1}
# The trace writer puts traces on disk 16 at a time (or every 2 s): with 48 traces, the first lines on disk
# leave at least 32 to run, so a kill lands mid-run however fast the machine is.
PROBLEMS = 24


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local cluster owned by this module (no dashboard, a small object store), shut down after."""
    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 ** 2,
                       log_to_driver=False, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1",
                                                                      "TOKENIZERS_PARALLELISM": "false"}})
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def problems(tmp_path_factory, tiny_model) -> Path:
    return write_problems(tmp_path_factory.mktemp("ray-problems") / "problems.jsonl", PROBLEMS)


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory, problems) -> list:
    """The reference: the same config as a one-machine `distill generate` in a fresh process with one OpenMP
    thread, like each replica (a Replica runs torch on its ray.num_cpus=1). Not in this process: what earlier
    tests left in torch's global state (threads, deterministic kernels) could move a logit."""
    folder = tmp_path_factory.mktemp("local")
    config = hf_config(folder, "local", problems, **COMMON)
    config_file = folder / "generate.json"
    config_file.write_text(config.model_dump_json())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "distill.generation", "--config-json", str(config_file), "--quiet"],
                   env=env, check=True, timeout=600)
    return traces_of(config.output)


def _by_key(traces) -> dict:
    return {t.key: t.to_json() for t in traces}


def _wait_for_lines(path: Path, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and count_lines(path) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines")


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_ray_replica_killed_mid_run_gives_the_one_machine_traces(tmp_path, cluster, problems, one_machine):
    config = hf_config(tmp_path, "ray", problems, **COMMON, **RAY)
    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.update(result=generate(config, progress=False)))
    run.start()
    _wait_for_lines(config.output, 1)  # the replicas are up, two thirds still to run
    victim = next(name for name in ray.util.list_named_actors() if name.endswith("-replica-0"))
    ray.kill(ray.get_actor(victim), no_restart=False)  # its process dies at once; Ray may restart it
    run.join(timeout=300)
    assert not run.is_alive()
    result = outcome["result"]
    assert result.stats["run"]["executor"] == "ray" and result.stats["run"]["replicas"] == 2
    # Ray restarted the replica and its unfinished request ran again there.
    assert result.stats["run"]["replica_restarts"] >= 1 and result.stats["run"]["requeued_requests"] >= 1
    traces = traces_of(result.output)
    assert len(traces) == len(one_machine) == 2 * PROBLEMS  # every key once: nothing lost, nothing doubled
    assert _by_key(traces) == _by_key(one_machine)


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_ray_driver_killed_then_rerun_resumes_by_key(tmp_path, cluster, problems, one_machine):
    config = hf_config(tmp_path, "driver", problems, **COMMON, **RAY)
    config_file = tmp_path / "generate.json"
    config_file.write_text(config.model_dump_json())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": cluster, "TOKENIZERS_PARALLELISM": "false"}
    driver = subprocess.Popen([sys.executable, "-m", "distill.generation", "--config-json", str(config_file),
                               "--quiet"], env=env)
    try:
        _wait_for_lines(config.output, 1)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
    partial = count_lines(config.output)
    assert 0 < partial < 2 * PROBLEMS
    result = generate(config, progress=False)  # this process is the new driver, on the same cluster
    assert result.skipped >= partial and result.written == 2 * PROBLEMS - result.skipped
    assert _by_key(traces_of(result.output)) == _by_key(one_machine)
    assert json.loads(result.stats_path.read_text())["traces"] == 2 * PROBLEMS


def test_filter_verification_on_ray_actors_matches_the_local_pool(tmp_path, cluster):
    from test_filter import r1, thinking, write_jsonl

    from distill.config import FilterConfig
    from distill.filter import filter_traces
    from distill.records import Problem

    problems = [Problem(id=f"sum-{i}", problem=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(6)]
    tower = Problem(id="tower", problem="Compute $2^{2^2} - 15$.", answer="1")
    traces = [r1(p, s, thinking(f"adding {p.id} (try {s})"), f"\\boxed{{{2 * i + s}}}")
              for i, p in enumerate(problems) for s in range(2)]
    # A verification that overruns its budget: the actor's pool kills the worker and the trace is rejected.
    traces.append(r1(tower, 0, thinking("a tower of powers"), "\\boxed{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}"))
    source = write_jsonl(tmp_path / "traces.jsonl", traces)
    gold = write_jsonl(tmp_path / "problems.jsonl", [p.to_json() for p in [*problems, tower]])

    def run(name: str, **changes) -> Path:
        config = FilterConfig(input=source, problems=gold, output_dir=tmp_path / name, math_timeout_s=1.0,
                              workers=1, **changes)
        return filter_traces(config, progress=False).output_dir

    local = run("local")
    on_ray = run("ray", executor="ray", ray={"replicas": 2, "num_cpus": 1, "chunk": 4})
    for name in ("kept.jsonl", "rejected.jsonl"):
        assert (on_ray / name).read_text() == (local / name).read_text()
    stats = json.loads((on_ray / "stats.json").read_text())
    assert stats["kept"] == 6 and stats["workers"] == 2
    rejected = {r["problem_id"]: r["reasons"] for r in map(json.loads, (on_ray / "rejected.jsonl").open())}
    assert "tower" in rejected
