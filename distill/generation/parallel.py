"""Data parallelism for the vllm backend: one engine per replica, each in its own worker process.

vLLM's offline `LLM` refuses data_parallel_size > 1 in one process, so `vllm.data_parallel_size=D`
starts D `python -m distill.generation` workers, each pinned to its tensor_parallel_size GPUs and owning
a finer shard of this run's problems (`shards.split_shard`). Each writes and resumes its own part file;
once all are done the parts are merged into the output and the stats written over the result.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from distill.config import GenerateConfig, config_hash
from distill.errors import DistillError
from distill.files import atomic_write_json, read_json_if_any
from distill.generation.output import GenerateResult, check_same_config, stats_path_for
from distill.generation.shards import merge_shards, split_shard
from distill.generation.stats import RunCounters, file_stats
from distill.jsonl import JsonlWriter


def _devices(count: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in visible.split(",") if d] if visible else [str(i) for i in range(count)]
    if len(devices) < count:
        raise DistillError(f"vllm: data_parallel_size x tensor_parallel_size needs {count} GPUs, "
                           f"CUDA_VISIBLE_DEVICES offers {len(devices)}")
    return devices


def generate_data_parallel(config: GenerateConfig, *, problems, progress: bool):
    dp, tp = config.vllm.data_parallel_size, config.vllm.tensor_parallel_size
    output = Path(config.output)
    digest = config_hash(config)
    check_same_config(output, digest)
    problems_path = config.problems
    if problems is not None:  # workers are separate processes: hand them the problems as a file
        problems_path = output.with_name(output.stem + ".problems.jsonl")
        staging = problems_path.with_suffix(".tmp")
        staging.unlink(missing_ok=True)
        with JsonlWriter(staging) as tmp:
            tmp.write_many(problems)
        os.replace(staging, problems_path)
    devices = _devices(dp * tp)
    parts, workers = [], []
    for d, shard in enumerate(split_shard(config.shard, dp)):
        part = output.with_name(f"{output.stem}.dp{d}of{dp}{output.suffix}")
        worker = config.model_copy(deep=True)
        worker.vllm.data_parallel_size = 1
        worker.shard, worker.output, worker.problems = shard, part, problems_path
        config_file = part.with_suffix(".config.json")
        atomic_write_json(config_file, worker.model_dump(mode="json"))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices[d * tp:(d + 1) * tp])}
        command = [sys.executable, "-m", "distill.generation", "--config-json", str(config_file)]
        if not progress or d > 0:  # one bar on the terminal is readable, D interleaved ones are not
            command.append("--quiet")
        workers.append(subprocess.Popen(command, env=env))
        parts.append(part)
    try:
        codes = [p.wait() for p in workers]
    finally:  # interrupted: take the workers down too (their part files keep what they finished)
        for p in workers:
            if p.poll() is None:
                p.terminate()
                p.wait()
    failed = [(d, rc) for d, rc in enumerate(codes) if rc != 0]
    if failed:
        raise DistillError("data-parallel workers failed: " + ", ".join(f"#{d} exit {rc}" for d, rc in failed)
                           + "; rerun to resume (each worker keeps its part file)")

    counters = RunCounters(existing=0)
    for part in parts:
        run = (read_json_if_any(stats_path_for(part)) or {}).get("run", {})
        counters.written += run.get("written", 0)
        counters.skipped += run.get("skipped_existing", 0)
        counters.output_tokens += run.get("output_tokens", 0)
        counters.wall_s = max(counters.wall_s, run.get("wall_s", 0.0))
        counters.load_s = max(counters.load_s, run.get("load_s", 0.0))
    inputs = ([output] if output.exists() else []) + [p for p in parts if p.exists()]
    merge_shards(inputs, output)
    stats = file_stats(output, config=config, digest=digest, counters=counters)
    stats_path = stats_path_for(output)
    atomic_write_json(stats_path, stats)
    return GenerateResult(output=output, stats_path=stats_path, stats=stats,
                          written=counters.written, skipped=counters.skipped)
