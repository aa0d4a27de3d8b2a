"""`generate()`: Problems in, Traces out, resumable, sharded, with a progress bar and a stats file.

The loop streams: problems are read lazily, each becomes n requests (skipping those already in the
output), the backend keeps at most `batch_size x n` in flight, and each finished trace is appended
through `JsonlWriter` (whole lines, fsync'd in small batches). A SIGKILL therefore loses only what was
in flight; the rerun reads the keys back and carries on. Memory holds ids and keys (short strings, for
resume and the duplicate check), never problem texts or traces beyond those in flight.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path

from distill.config import GenerateConfig, config_hash
from distill.errors import DistillError
from distill.files import atomic_write_json, unchanged_on_error
from distill.generation.backends import Backend, Generated, Request, make_backend
from distill.generation.extract import split_completion
from distill.generation.output import GenerateResult, check_same_config, stats_path_for
from distill.generation.parallel import generate_data_parallel
from distill.generation.progress import GenerateProgress
from distill.generation.prompts import build_messages
from distill.generation.seeds import request_key
from distill.generation.shards import parse_shard, shard_of
from distill.generation.stats import RunCounters, file_stats
from distill.jsonl import JsonlWriter
from distill.problems import iter_problems, unique_problems
from distill.records import Problem, Trace, trace_key

log = logging.getLogger("distill.generation")

# JsonlWriter flushes (and fsyncs) every 16 traces; a slow teacher also flushes at least this often,
# so a SIGKILL loses what was in flight plus at most this many seconds of finished traces.
_FLUSH_EVERY_S = 2.0


def _trace_key(obj: dict) -> str:
    return trace_key(obj["problem_id"], obj["sample"])


def generate(config: GenerateConfig, *, problems: Iterable[Problem] | None = None,
             progress: bool = True) -> GenerateResult:
    """Sample `config.sampling.n` traces per problem from the teacher into `config.output`."""
    if config.output is None:
        raise DistillError("generate: no output file; set output=PATH (a recipe sets it to RUN_DIR/traces.jsonl)")
    if problems is None and config.problems is None:
        raise DistillError("generate: no problems; set problems=PATH to a Problem JSONL file")
    if config.backend == "vllm" and config.vllm.data_parallel_size > 1:
        return generate_data_parallel(config, problems=problems, progress=progress)

    output = Path(config.output)
    digest = config_hash(config)
    check_same_config(output, digest)
    with unchanged_on_error(output):  # bad problems, found by the counting pass, leave earlier traces as they were
        writer = JsonlWriter(output, key=_trace_key)
        try:
            todo = _count_todo(config, problems, writer)
        except BaseException:
            writer.close()
            raise
    counters = RunCounters(existing=writer.written)
    bar = GenerateProgress(enabled=progress, n=config.sampling.n)
    backend: Backend | None = None
    started = time.perf_counter()
    try:
        in_scope = _in_scope(config, problems)
        bar.start(total_samples=todo)
        requests = _requests(in_scope, config, writer, counters, bar)
        first = next(requests, None)
        if first is not None:  # work to do: only now pay for loading the teacher
            backend = make_backend(config)
            backend.prepare(first)
            counters.load_s = time.perf_counter() - started
            bar.restart_clock()
            queue = _chain_prepared(first, requests, backend)
            max_in_flight = config.batch_size * config.sampling.n
            flushed = time.monotonic()
            for request, completion in backend.generate(queue, max_in_flight):
                if completion.finish_reason == "prompt_too_long":
                    counters.too_long.append(request.problem_id)
                    bar.advance(request, 0)
                    continue
                writer.write(_trace(request, completion, config, backend.teacher, digest, counters))
                counters.add(completion)
                bar.advance(request, completion.completion_tokens)
                if time.monotonic() - flushed > _FLUSH_EVERY_S:  # a slow teacher's traces reach disk too
                    writer.flush()
                    flushed = time.monotonic()
    finally:
        writer.close()
        bar.stop()
        if backend is not None:
            backend.close()
    counters.wall_s = time.perf_counter() - started
    if counters.too_long:
        log.warning("%d prompts were longer than the model's context and got no trace (first: %s)",
                    len(counters.too_long), ", ".join(sorted(set(counters.too_long))[:5]))

    stats = file_stats(output, config=config, digest=digest, counters=counters)
    describe = getattr(backend, "describe", None)  # where it ran: Ray replicas, the sampler vLLM used
    if describe is not None:
        stats["run"].update(describe())
    stats_path = stats_path_for(output)
    atomic_write_json(stats_path, stats)
    return GenerateResult(output=output, stats_path=stats_path, stats=stats,
                          written=counters.written, skipped=counters.skipped)


def _in_scope(config: GenerateConfig, problems: Iterable[Problem] | None) -> Iterator[Problem]:
    """Problems this worker owns: the first `limit`, then this shard's slice; ids must be unique."""
    source = unique_problems(problems) if problems is not None else iter_problems(config.problems)
    shard = parse_shard(config.shard) if config.shard else None
    for index, problem in enumerate(source):
        if config.limit is not None and index >= config.limit:
            return
        if shard is not None and shard_of(problem.id, shard[1]) != shard[0]:
            continue
        yield problem


def _count_todo(config: GenerateConfig, problems: Iterable[Problem] | None, writer) -> int | None:
    """Samples still to write, for the bar's total and ETA; a first pass that also fails fast on bad
    or duplicate problems before a teacher is loaded. None when the problems can be read only once."""
    if problems is not None and not isinstance(problems, Sized):
        return None
    return sum(not writer.has(trace_key(problem.id, s))
               for problem in _in_scope(config, problems) for s in range(config.sampling.n))


def _requests(problems: Iterator[Problem], config: GenerateConfig, writer, counters: RunCounters,
              bar: GenerateProgress) -> Iterator[Request]:
    for problem in problems:
        messages = None
        for sample in range(config.sampling.n):
            if writer.has(trace_key(problem.id, sample)):
                counters.skipped += 1
                continue
            messages = messages or build_messages(problem, config.prompts)
            bar.expect(problem.id)
            yield Request(problem_id=problem.id, sample=sample, messages=messages,
                          key=request_key(config.sampling.seed, problem.id, sample))


def _chain_prepared(first: Request, rest: Iterator[Request], backend: Backend) -> Iterator[Request]:
    yield first
    for request in rest:
        backend.prepare(request)
        yield request


def _trace(request: Request, completion: Generated, config: GenerateConfig, teacher: str, digest: str,
           counters: RunCounters) -> Trace:
    split = split_completion(completion.text, prefilled_think=request.prefilled_think,
                             reasoning_content=completion.reasoning_content, fmt=config.reasoning_format)
    counters.splits[split.how] += 1
    return Trace(
        problem_id=request.problem_id, sample=request.sample, teacher=teacher, prompt=request.messages,
        completion=completion.text, reasoning=split.reasoning, answer=split.answer,
        finish_reason=completion.finish_reason, prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens, config_hash=digest)
