"""Joining a Ray cluster: the one place distill calls `ray.init`.

`executor: ray` in generate, filter or eval connects here. With `ray.address` (or RAY_ADDRESS) set, the run
joins that cluster as a driver; otherwise it starts a small local one (no dashboard, a small object store),
which is what a laptop or the test suite wants. A process that already called `ray.init` keeps its
connection, so a notebook or a test can own the cluster's lifetime.
"""
from __future__ import annotations

import os
from typing import Any

from distill.config import RayConfig
from distill.errors import DistillError


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise DistillError("executor=ray needs Ray: `pip install 'distill[ray]'` (or set executor=local)") from None
    return ray


def connect(config: RayConfig) -> tuple[Any, bool]:
    """The `ray` module, connected to the configured cluster (started locally when none is named), and
    whether this call connected (the caller then disconnects with `ray.shutdown()` when done)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray, False
    address = config.address or os.environ.get("RAY_ADDRESS")
    # Replicas import distill from the driver's checkout; ship no working directory (the code is installed).
    runtime_env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            cpus = max(1, int(config.replicas * config.num_cpus + 0.999))
            ray.init(num_cpus=cpus, num_gpus=int(config.replicas * config.num_gpus + 0.999) or None,
                     include_dashboard=False, object_store_memory=int(config.object_store_gib * 1024 ** 3),
                     runtime_env=runtime_env, log_to_driver=False)
    except ConnectionError as exc:
        raise DistillError(f"ray: cannot reach the cluster at {address} ({exc}); is `ray start --head` "
                           "running there? (set ray.address)") from None
    return ray, True


def replica_options(config: RayConfig) -> dict[str, Any]:
    """Scheduling options of one replica actor: its share of the cluster and its restart policy."""
    # max_task_retries=-1: calls a replica was running or holding when it died run again on its restarted
    # self (at most max_restarts times), so no request is lost and none runs twice to completion.
    options: dict[str, Any] = {"num_cpus": config.num_cpus, "max_restarts": config.max_restarts,
                               "max_task_retries": -1, "max_concurrency": 1}
    if config.num_gpus:
        options["num_gpus"] = config.num_gpus
    if config.resources:
        options["resources"] = dict(config.resources)
    return options
