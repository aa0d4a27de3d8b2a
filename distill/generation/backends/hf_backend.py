"""transformers `generate`: for teachers vLLM cannot load, and machines without vLLM.

Batched, left-padded greedy decoding over a logits processor that draws each token with the same
seeded sampler the vLLM backend uses, so one (seed, problem, sample) gives one trace here too.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
)

from distill.config import GenerateConfig
from distill.generation.backends.base import Completion, Request
from distill.generation.prompts import render_prompt, template_opens_think
from distill.generation.sampling import one_hot_logits, sample_rows
from distill.generation.seeds import uniform
from distill.models import resolve_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SeededLogitsProcessor(LogitsProcessor):
    """transformers' side of `sampling.sample_rows`: row i draws with `keys[i]` at its output position."""

    def __init__(self, keys: list[int], temperature: float, top_p: float, prompt_width: int) -> None:
        self.keys = keys
        self.temperature = torch.full((len(keys),), float(temperature))
        self.top_p = torch.full((len(keys),), float(top_p), dtype=torch.float64)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        position = input_ids.shape[1] - self.prompt_width  # every row is padded to the same width
        u = torch.tensor([uniform(k, position) for k in self.keys], dtype=torch.float64)
        tokens = sample_rows(scores, self.temperature, self.top_p, u)
        scores = scores.clone()
        one_hot_logits(scores, torch.arange(scores.shape[0], device=scores.device), tokens.to(scores.device))
        return scores


class HFBackend:
    def __init__(self, config: GenerateConfig) -> None:
        self.config = config
        self.teacher = config.model
        path = resolve_model(config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = _DTYPES.get(config.hf.dtype, "auto")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def prepare(self, request: Request) -> None:
        text = render_prompt(self.tokenizer, request.messages, self.config.prompts)
        request.prefilled_think = template_opens_think(text)
        request.prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Completion]]:
        size = max(1, min(self.config.hf.batch_size, max_in_flight))
        batch: list[Request] = []
        for request in requests:
            batch.append(request)
            if len(batch) == size:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    @torch.inference_mode()
    def _run(self, batch: list[Request]) -> Iterator[tuple[Request, Completion]]:
        sampling = self.config.sampling
        padded = self.tokenizer.pad({"input_ids": [r.prompt_ids for r in batch]}, return_tensors="pt")
        width = padded["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if sampling.temperature > 0:
            processors.append(SeededLogitsProcessor([r.key for r in batch], sampling.temperature,
                                                    sampling.top_p, width))
        generation = GenerationConfig(max_new_tokens=sampling.max_tokens, do_sample=False,
                                      eos_token_id=sorted(self.eos_ids),
                                      pad_token_id=self.tokenizer.pad_token_id)
        output = self.model.generate(**{k: v.to(self.device) for k, v in padded.items()},
                                     generation_config=generation, logits_processor=processors)
        for request, row in zip(batch, output[:, width:].tolist()):
            stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            tokens = row if stop is None else row[:stop + 1]  # like vLLM: the EOS token counts
            text_ids = tokens if stop is None else tokens[:-1]
            yield request, Completion(
                text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
                finish_reason="length" if stop is None else "stop",
                prompt_tokens=len(request.prompt_ids), completion_tokens=len(tokens))

    def close(self) -> None:
        del self.model
