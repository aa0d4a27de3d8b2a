"""The student's samples for on-policy distillation: who draws them (distill.rollout chooses, as for RL) and the
batch the step trains on.

    vllm-reload    distill's vLLM engine in its own process, the student's weights reloaded into it before each
                   draw (distill.rollout.vllm_engine); with `kd.overlap` the next step's draw runs there while
                   this step trains, and each sampled token keeps the engine's log-prob for the importance weight
    transformers   `generate` on a bf16 copy of the student (CPUs with bf16 math, GPUs without vLLM) or on the
                   student itself; seeded by (seed, step), so a resumed run draws what the uninterrupted one did

Either way a step's completions become one `Batch`: left-padded prompts, then the completions right-padded,
with a mask over each completion's tokens up to and including its first stop token.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import torch

from distill.kd.config import KDConfig
from distill.rollout import Rollout


@dataclass
class Batch:
    input_ids: torch.Tensor       # [B, P + C]: left-padded prompt, then the completion (right-padded)
    attention_mask: torch.Tensor  # [B, P + C]
    completion_mask: torch.Tensor  # [B, C]: 1 on sampled tokens up to and including the stop token
    problem_ids: list[str]
    users: list[str]
    sampler_logprobs: torch.Tensor | None = None  # [B, C]: each token's log-prob under the weights that drew it

    @property
    def completion_length(self) -> int:
        return self.completion_mask.shape[1]

    def to(self, device: torch.device) -> Batch:
        moved = {name: getattr(self, name).to(device) if getattr(self, name) is not None else None
                 for name in ("input_ids", "attention_mask", "completion_mask", "sampler_logprobs")}
        return replace(self, **moved)

    def rows(self, part: slice) -> Batch:
        return Batch(self.input_ids[part], self.attention_mask[part], self.completion_mask[part],
                     self.problem_ids[part], self.users[part],
                     self.sampler_logprobs[part] if self.sampler_logprobs is not None else None)


def completion_mask(completion: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """1 on each completion's tokens up to and including its first stop token (the stop token is trained on)."""
    is_stop = torch.isin(completion, torch.tensor(stop_ids, device=completion.device))
    after_stop = (is_stop.long().cumsum(-1) - is_stop.long()) > 0
    return (~after_stop).long()


def generate(model, tokenizer, texts: list[str], generation, stop_ids: list[int],
             autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """transformers: completions of left-padded prompts: input_ids [B, P + C], attention_mask, completion_mask."""
    tokenizer.padding_side = "left"
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = encoded.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            out = model.generate(**encoded, generation_config=generation)
    finally:
        model.train(was_training)
    mask = completion_mask(out[:, encoded["input_ids"].shape[1]:], stop_ids)
    return out, torch.cat([encoded["attention_mask"], mask], dim=1), mask


def batch_of(prompts: list[list[int]], drawn: list[tuple[list[int], list[float]]], pad_id: int,
             stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids from an engine as `generate` lays them out: input_ids, attention_mask, completion_mask, and the
    sampled tokens' log-probs (0 on padding)."""
    width, length = max(len(p) for p in prompts), max(max(len(ids) for ids, _ in drawn), 1)
    input_ids = torch.full((len(prompts), width + length), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    logprobs = torch.zeros((len(prompts), length))
    for row, (prompt, (ids, lps)) in enumerate(zip(prompts, drawn)):
        input_ids[row, width - len(prompt):width] = torch.tensor(prompt)
        prompt_mask[row, width - len(prompt):] = 1
        input_ids[row, width:width + len(ids)] = torch.tensor(ids, dtype=torch.long)
        logprobs[row, :len(lps)] = torch.tensor(lps)
    # Past its own tokens a row holds padding, which may be the stop token's id: mask by length as well.
    drawn_length = torch.tensor([len(ids) for ids, _ in drawn])
    mask = completion_mask(input_ids[:, width:], stop_ids) * (torch.arange(length)[None, :] < drawn_length[:, None])
    return input_ids, torch.cat([prompt_mask, mask], dim=1), mask, logprobs


class StudentSampler:
    """Draws each step's completions from the student as it is now (`draw`), or, with `kd.overlap`, starts the next
    step's draw in the engine and returns at once (`start`)."""

    def __init__(self, rollout: Rollout, config: KDConfig, model_path: str, tokenizer, stop_ids: list[int],
                 precision: str, autocast, *, resumed_at: int = 0):
        self.config, self.tokenizer, self.stop_ids, self.autocast = config, tokenizer, stop_ids, autocast
        self.engine = self.copy = None
        self.background = None
        if rollout.backend == "vllm-reload":
            from distill.rollout.vllm_engine import VLLMRollout

            # Seeded by the step the run starts at: a resumed run does not replay the first start's stream.
            self.engine = VLLMRollout(model_path, config, stop_ids=stop_ids, seed=config.seed + resumed_at,
                                      logprobs=config.overlap, beside_trainer=config.overlap)
            self.background = ThreadPoolExecutor(1, thread_name_prefix="kd-sampling") if config.overlap else None
        elif rollout.bf16_copy:
            from distill.rollout.transformers_copy import RolloutCopy
            from distill.sft.modeling import DTYPES

            self.copy = RolloutCopy(model_path, DTYPES[precision], "cuda" if torch.cuda.is_available() else None)

    @property
    def name(self) -> str:
        return "vllm-reload" if self.engine else "bf16 copy" if self.copy else "student"

    def draw(self, student, rows: list[dict], step: int) -> Batch:
        """`samples_per_prompt` completions per row from the student's current weights (`step` updates done)."""
        if self.engine is not None:
            self.engine.sync(student, step)
            return self._engine_draw(rows, self._prompt_ids(rows))
        if self.copy is not None:
            self.copy.sync(student)
        return self._transformers(self.copy.model if self.copy else student, rows, step)

    def start(self, student, rows: list[dict], *, weights_at: int) -> Future:
        """kd.overlap: the weights (`weights_at` updates done) are copied here, then written, reloaded into the
        engine and sampled from in the background; the caller trains (and changes its own weights) meanwhile."""
        prompts = self._prompt_ids(rows)
        weights = None if weights_at == self.engine.synced_step else self.engine.snapshot(student)

        def load_and_draw() -> Batch:
            if weights is not None:
                self.engine.load(weights, weights_at)
            return self._engine_draw(rows, prompts)

        return self.background.submit(load_and_draw)

    def training_beside(self, draw: Future | None):
        """The trainer's compute while `draw` runs in the engine: kept off the engine's cores on a CPU until the
        draw is done (distill.rollout.cores; the block's `widen()` checks), as it was otherwise."""
        from distill.rollout.cores import Unpinned

        cores = self.engine.cores if self.engine is not None else None
        if draw is None or draw.done() or cores is None:
            return Unpinned()
        return cores.trainer_only(until=draw.done)

    def _prompt_ids(self, rows: list[dict]) -> list[list[int]]:
        # In the calling thread, never the background one: a fast tokenizer shared between threads can refuse a
        # concurrent call.
        return [self.tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
                for row in rows for _ in range(self.config.samples_per_prompt)]

    def _batch(self, rows: list[dict], input_ids, attention_mask, mask, logprobs=None) -> Batch:
        n = self.config.samples_per_prompt
        return Batch(input_ids, attention_mask, mask, [row["problem_id"] for row in rows for _ in range(n)],
                     [row["user"] for row in rows for _ in range(n)], logprobs)

    def _engine_draw(self, rows: list[dict], prompts: list[list[int]]) -> Batch:
        input_ids, attention_mask, mask, logprobs = batch_of(prompts, self.engine.sample(prompts),
                                                             self.tokenizer.pad_token_id, self.stop_ids)
        return self._batch(rows, input_ids, attention_mask, mask, logprobs if self.config.overlap else None)

    def _transformers(self, model, rows: list[dict], step: int) -> Batch:
        """Seeded by (seed, step): a resumed run draws what the uninterrupted run would have."""
        from transformers import GenerationConfig

        config = self.config
        texts = [row["prompt"] for row in rows for _ in range(config.samples_per_prompt)]
        # A fresh generation config: the model's own may carry a repetition penalty or top-k, and samples must
        # come from the student's distribution (at `temperature`) for the KL estimate to be one.
        generation = GenerationConfig(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0,
                                      max_new_tokens=config.max_completion_length, eos_token_id=self.stop_ids,
                                      pad_token_id=self.tokenizer.pad_token_id, use_cache=True)
        generator_state = torch.get_rng_state()
        torch.manual_seed(config.seed * 1_000_003 + step)
        try:
            input_ids, attention_mask, mask = generate(model, self.tokenizer, texts, generation, self.stop_ids,
                                                       self.autocast)
        finally:
            torch.set_rng_state(generator_state)
        return self._batch(rows, input_ids, attention_mask, mask)

    def timings(self) -> dict[str, Any]:
        """The engine's reload and generate medians, and on a CPU the cores it computes on and the trainer's."""
        if self.engine is None:
            return {}
        cores = self.engine.cores
        return {**self.engine.timings(), "engine_cores": None if cores is None else
                {"worker": sorted(cores.worker), "trainer": sorted(cores.trainer)}}

    def close(self) -> None:
        if self.background is not None:
            self.background.shutdown(wait=True, cancel_futures=True)
        if self.engine is not None:
            self.engine.close()

