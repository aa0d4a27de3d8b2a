"""The vLLM side of seeded sampling: a v1 batch-level logits processor.

Loaded into every engine `shared_llm` builds, and into a server with
`vllm serve MODEL --logits-processors distill.generation.vllm_sampler:SeededSampler`. A request opts in
through `SamplingParams.extra_args` (the server's `vllm_xargs`) with the keys below; every other request
is left alone, so the processor costs nothing to traffic that does not use it. For opted-in rows it
draws the token with `sampling.sample_rows` and leaves a one-hot row behind, which the engine's greedy
path (temperature 0) or its random path (any temperature) both turn into that token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor

from distill.generation.sampling import one_hot_logits, penalize, sample_rows
from distill.generation.seeds import uniform
from distill.hooks import update_logits_processor_rows

KEY, TEMPERATURE, TOP_P = "distill_key", "distill_temperature", "distill_top_p"
TOP_K, MIN_P = "distill_top_k", "distill_min_p"
REPETITION, PRESENCE = "distill_repetition_penalty", "distill_presence_penalty"


@dataclass
class _Row:
    key: int
    temperature: float
    top_p: float
    output_ids: list[int]  # vLLM's live list of this request's output tokens: its length is the position
    top_k: int = 0
    min_p: float = 0.0
    repetition: float = 1.0
    presence: float = 0.0
    prompt_ids: list[int] | None = None


def seeded_extra_args(key: int, sampling) -> dict[str, int | float]:
    """The extra_args (a server's vllm_xargs) that opt one request into seeded sampling with `sampling`'s
    controls; controls left at their neutral value are not sent."""
    args: dict[str, int | float] = {KEY: key, TEMPERATURE: float(sampling.temperature), TOP_P: float(sampling.top_p)}
    optional = {TOP_K: (sampling.top_k, 0), MIN_P: (sampling.min_p, 0.0),
                REPETITION: (sampling.repetition_penalty, 1.0), PRESENCE: (sampling.presence_penalty, 0.0)}
    args.update({name: value for name, (value, neutral) in optional.items() if value != neutral})
    return args


class SeededSampler(LogitsProcessor):
    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        args = sampling_params.extra_args or {}
        if KEY not in args:
            return
        if not isinstance(args[KEY], int) or not 0 <= args[KEY] < 2**63:
            raise ValueError(f"extra_args[{KEY!r}] must be an int in [0, 2**63)")
        if float(args.get(TEMPERATURE, 1.0)) < 0:
            raise ValueError(f"extra_args[{TEMPERATURE!r}] must be >= 0 (0: greedy, penalties only)")
        if not 0 < float(args.get(TOP_P, 1.0)) <= 1:
            raise ValueError(f"extra_args[{TOP_P!r}] must be in (0, 1]")

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        self.rows: dict[int, _Row] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # it decides the argmax: vLLM must run it before greedy decoding

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        update_logits_processor_rows(self.rows, batch_update, self._new_row)

    @staticmethod
    def _new_row(params: SamplingParams, prompt_ids: list[int] | None, output_ids: list[int]) -> _Row | None:
        args = params.extra_args or {}
        if KEY not in args:
            return None
        return _Row(int(args[KEY]), float(args.get(TEMPERATURE, 1.0)), float(args.get(TOP_P, 1.0)), output_ids,
                    top_k=int(args.get(TOP_K, 0)), min_p=float(args.get(MIN_P, 0.0)),
                    repetition=float(args.get(REPETITION, 1.0)), presence=float(args.get(PRESENCE, 0.0)),
                    prompt_ids=prompt_ids)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        index = sorted(i for i in self.rows if i < logits.shape[0])
        if not index:
            return logits
        rows = [self.rows[i] for i in index]
        rows_t = torch.tensor(index, dtype=torch.long, device=logits.device)
        if any(r.repetition != 1.0 or r.presence != 0.0 for r in rows):
            picked = logits[rows_t]
            penalize(picked, [list(r.prompt_ids or []) + list(r.output_ids) for r in rows],
                     [list(r.output_ids) for r in rows], [r.repetition for r in rows], [r.presence for r in rows])
            logits[rows_t] = picked
        drawn = [(i, r) for i, r in zip(index, rows) if r.temperature > 0]  # T=0 rows: greedy takes the argmax
        if not drawn:
            return logits
        index, rows = [i for i, _ in drawn], [r for _, r in drawn]
        rows_t = torch.tensor(index, dtype=torch.long, device=logits.device)
        u = torch.tensor([uniform(r.key, len(r.output_ids)) for r in rows], dtype=torch.float64)
        temperature = torch.tensor([r.temperature for r in rows], dtype=torch.float32)
        top_p = torch.tensor([r.top_p for r in rows], dtype=torch.float64)
        top_k = torch.tensor([r.top_k for r in rows], dtype=torch.long)
        min_p = torch.tensor([r.min_p for r in rows], dtype=torch.float32)
        tokens = sample_rows(logits[rows_t], temperature, top_p, u, top_k, min_p)
        one_hot_logits(logits, rows_t, tokens)
        return logits
