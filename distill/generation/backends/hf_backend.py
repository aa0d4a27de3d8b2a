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

from distill.config import GenerateConfig, SamplingConfig
from distill.generation.backends.base import Generated, Request
from distill.generation.prompts import render_prompt, template_opens_think
from distill.generation.sampling import one_hot_logits, penalize, sample_rows
from distill.generation.seeds import uniform
from distill.models import resolve_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SeededLogitsProcessor(LogitsProcessor):
    """transformers' side of `sampling.sample_rows`: penalties, then (above temperature 0) row i draws with
    `keys[i]` at its output position; at temperature 0 greedy decoding takes the penalised argmax."""

    def __init__(self, batch: list[Request], sampling: SamplingConfig, prompt_width: int) -> None:
        rows = len(batch)
        self.keys = [r.key for r in batch]
        self.prompts = [r.prompt_ids for r in batch]  # without the left padding
        self.sampling = sampling
        self.temperature = torch.full((rows,), float(sampling.temperature))
        self.top_p = torch.full((rows,), float(sampling.top_p), dtype=torch.float64)
        self.top_k = torch.full((rows,), sampling.top_k, dtype=torch.long)
        self.min_p = torch.full((rows,), float(sampling.min_p))
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        position = input_ids.shape[1] - self.prompt_width  # every row is padded to the same width
        scores = scores.clone()
        s = self.sampling
        if s.repetition_penalty != 1.0 or s.presence_penalty != 0.0:
            outputs = input_ids[:, self.prompt_width:].tolist()
            penalize(scores, [p + o for p, o in zip(self.prompts, outputs)], outputs,
                     [s.repetition_penalty] * len(outputs), [s.presence_penalty] * len(outputs))
        if s.temperature == 0:
            return scores
        u = torch.tensor([uniform(k, position) for k in self.keys], dtype=torch.float64)
        tokens = sample_rows(scores, self.temperature, self.top_p, u, self.top_k, self.min_p)
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
        # Read straight onto the device: loading on the CPU first would hold the whole teacher in RAM, then copy it.
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def prepare(self, request: Request) -> None:
        text = render_prompt(self.tokenizer, request.messages, self.config.prompts)
        request.prefilled_think = template_opens_think(text)
        request.prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Generated]]:
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
    def _run(self, batch: list[Request]) -> Iterator[tuple[Request, Generated]]:
        sampling = self.config.sampling
        padded = self.tokenizer.pad({"input_ids": [r.prompt_ids for r in batch]}, return_tensors="pt")
        width = padded["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if sampling.temperature > 0 or sampling.repetition_penalty != 1.0 or sampling.presence_penalty != 0.0:
            processors.append(SeededLogitsProcessor(batch, sampling, width))
        generation = GenerationConfig(max_new_tokens=sampling.max_tokens, do_sample=False,
                                      eos_token_id=sorted(self.eos_ids),
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      stop_strings=sampling.stop or None)
        output = self.model.generate(**{k: v.to(self.device) for k, v in padded.items()},
                                     generation_config=generation, logits_processor=processors,
                                     tokenizer=self.tokenizer if sampling.stop else None)
        for request, row in zip(batch, output[:, width:].tolist()):
            yield request, self._completion(request, row)

    def _completion(self, request: Request, row: list[int]) -> Generated:
        end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
        tokens = row if end is None else row[:end + 1]  # like vLLM: the EOS token counts
        text = self.tokenizer.decode(tokens if end is None else tokens[:-1], skip_special_tokens=True)
        finish = "length" if end is None else "stop"
        hits = [i for i in (text.find(stop) for stop in self.config.sampling.stop) if i >= 0]
        if hits:  # like vLLM: the text ends before the stop string; the tokens up to it count
            text, finish = text[:min(hits)], "stop"
            if end is not None and row[end] == self.tokenizer.pad_token_id:
                tokens = tokens[:-1]  # a padded row after the stop string, not an EOS
        return Generated(text=text, finish_reason=finish, prompt_tokens=len(request.prompt_ids),
                          completion_tokens=len(tokens))

    def close(self) -> None:
        del self.model
