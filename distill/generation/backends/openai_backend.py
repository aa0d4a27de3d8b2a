"""Any OpenAI-compatible chat server: `vllm serve`, SGLang, hosted APIs such as DeepSeek's.

Requests run on a thread pool of `openai.concurrency` workers (HTTP waits, not CPU). Retries with
exponential backoff and jitter on 408/409/429/5xx, timeouts and dropped connections are the openai
client's own (`max_retries`, honouring Retry-After); a request still failing after them stops the run,
and a rerun resumes after the traces already written.

The server decides the chat template. Against a vLLM server (detected from `/v1/models`) we also use
its extensions: the `<think>\\n` prefill as a continued assistant turn, `chat_template_kwargs`, and the
seeded sampler through `vllm_xargs`, which reproduces traces when the server was started with
`--logits-processors distill.generation.vllm_sampler:SeededSampler` (and samples normally otherwise).
Other servers get the standard `seed` field, which hosted APIs treat as best effort.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from distill.chat_format import PREFILL
from distill.config import GenerateConfig
from distill.errors import DistillError
from distill.generation.backends.base import Generated, Request

_CONTEXT_ERRORS = ("context length", "maximum context", "too long", "max_model_len", "maximum model length")


class OpenAIBackend:
    def __init__(self, config: GenerateConfig) -> None:
        import openai

        self.config = config
        settings = config.openai
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=settings.base_url, api_key=os.environ.get(settings.api_key_env) or "EMPTY",
            max_retries=settings.max_retries, timeout=settings.timeout_s)
        self.teacher, self.is_vllm = self._discover(settings.served_model or config.model)
        # OpenAI's reasoning models refuse `max_tokens`; most other servers only know it.
        self.limit_param = "max_completion_tokens" if settings.token_limit_param == "max_completion_tokens" \
            else "max_tokens"

    def _discover(self, wanted: str) -> tuple[str, bool]:
        """The served model name, and whether the server is vLLM (its extensions are then safe to send)."""
        try:
            models = list(self.client.models.list())
        except self._openai.APIConnectionError as exc:
            raise DistillError(f"openai backend: cannot reach {self.config.openai.base_url} ({exc}); "
                               "is the server up? (set openai.base_url)") from None
        except self._openai.APIStatusError as exc:
            raise DistillError(f"openai backend: {self.config.openai.base_url}/models answered "
                               f"{exc.status_code}: {exc.message}") from None
        names = [m.id for m in models]
        is_vllm = any(getattr(m, "owned_by", None) == "vllm" for m in models)
        if wanted in names:
            return wanted, is_vllm
        if self.config.openai.served_model is None and len(names) == 1:
            return names[0], is_vllm  # one model served: that is the teacher
        raise DistillError(f"openai backend: the server does not serve '{wanted}'; it serves: "
                           f"{', '.join(names) or 'nothing'} (set openai.served_model)")

    def prepare(self, request: Request) -> None:
        request.prefilled_think = self.is_vllm and self.config.prompts.prefill_think

    def _body(self, request: Request) -> dict[str, Any]:
        sampling = self.config.sampling
        messages = list(request.messages)
        body: dict[str, Any] = {"model": self.teacher, "n": 1, self.limit_param: sampling.max_tokens,
                                    "temperature": sampling.temperature, "top_p": sampling.top_p}
        if sampling.stop:
            body["stop"] = sampling.stop
        if sampling.presence_penalty:
            body["presence_penalty"] = sampling.presence_penalty
        # Not in OpenAI's schema but read by vLLM and SGLang servers (sent only when set). A vLLM server
        # running SeededSampler gets them in vllm_xargs too; applied again to its one-hot row they change nothing.
        extensions = {k: v for k, v in (("top_k", sampling.top_k), ("min_p", sampling.min_p),
                                        ("repetition_penalty", sampling.repetition_penalty))
                      if v != (1.0 if k == "repetition_penalty" else 0)}
        if not self.is_vllm:
            body.update(messages=messages, seed=request.key % 2**31)
            if extensions:
                body["extra_body"] = extensions
            return body
        from distill.generation.vllm_sampler import seeded_extra_args

        extra: dict[str, Any] = dict(extensions)
        if request.prefilled_think:
            messages.append({"role": "assistant", "content": PREFILL})
            extra.update(continue_final_message=True, add_generation_prompt=False)
        if self.config.prompts.chat_template_kwargs:
            extra["chat_template_kwargs"] = self.config.prompts.chat_template_kwargs
        if sampling.temperature > 0 or sampling.repetition_penalty != 1.0 or sampling.presence_penalty:
            # The server's SeededSampler applies every control itself (and draws the token above T=0).
            extra["vllm_xargs"] = seeded_extra_args(request.key, sampling)
        body.update(messages=messages, extra_body=extra)
        return body

    def _should_switch(self, body: dict[str, Any], message: str) -> bool:
        """Auto mode: a request sent with max_tokens that the server refused, naming max_completion_tokens."""
        return self.config.openai.token_limit_param == "auto" and "max_tokens" in body \
            and "max_completion_tokens" in message

    def _call(self, request: Request) -> Generated:
        body = self._body(request)
        try:
            response = self.client.chat.completions.create(**body)
        except self._openai.BadRequestError as exc:
            if self._should_switch(body, str(exc.message)):
                self.limit_param = "max_completion_tokens"  # for every request from now on
                return self._call(request)
            if any(s in str(exc.message).lower() for s in _CONTEXT_ERRORS):
                return Generated("", "prompt_too_long", 0, 0)
            raise DistillError(f"openai backend: the server refused problem '{request.problem_id}' "
                               f"sample {request.sample}: {exc.message}") from None
        except (self._openai.APIStatusError, self._openai.APIConnectionError) as exc:
            raise DistillError(f"openai backend: {self.config.openai.base_url} still failing after "
                               f"{self.config.openai.max_retries} retries: {exc}") from None
        choice = response.choices[0]
        message = choice.message
        # vLLM >= 0.11 names the parsed chain `reasoning`; DeepSeek's API and older vLLM `reasoning_content`.
        reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
        usage = response.usage
        return Generated(
            text=message.content or "", finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            reasoning_content=reasoning)

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Generated]]:
        limit = max(1, min(self.config.openai.concurrency, max_in_flight))
        source = iter(requests)
        pending: dict[Future, Request] = {}
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="distill-openai") as pool:
            try:
                exhausted = False
                while True:
                    while not exhausted and len(pending) < limit:
                        request = next(source, None)
                        if request is None:
                            exhausted = True
                            break
                        pending[pool.submit(self._call, request)] = request
                    if not pending:
                        return
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield pending.pop(future), future.result()
            finally:
                for future in pending:
                    future.cancel()

    def close(self) -> None:
        self.client.close()
