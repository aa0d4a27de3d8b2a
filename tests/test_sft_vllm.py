"""The merged LoRA student is a model vLLM serves, with the weights training produced.

bundled:tiny is random, so instead of reading its text we compare numbers: vLLM's log-probabilities of a
trained example equal transformers' on the merged checkpoint and on base + adapter (the merge is exact),
and they are higher than the base model's (the student learned its traces).
"""
from __future__ import annotations

import json

import pytest
import torch
from test_sft_support import read_log, tiny_config, write_traces

from distill.sft import build_example, train
from distill.sft.data import IGNORE


def _token_logprobs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


@pytest.mark.vllm
def test_merged_lora_student_generates_with_vllm(tmp_path, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import SamplingParams

    from distill.config import VLLMConfig
    from distill.generation.engine import shared_llm, shutdown_llm

    write_traces(tmp_path / "kept.jsonl", 2)
    result = train(tiny_config(tmp_path, max_steps=8, learning_rate=1e-2, merge=True,
                               lora={"r": 16, "alpha": 32, "dropout": 0.0}), progress=False)
    losses = [r["loss"] for r in read_log(result.log_path) if "loss" in r]
    assert losses[-1] < losses[0] - 0.2

    trace = json.loads((tmp_path / "kept.jsonl").read_text().splitlines()[0])
    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    example = build_example(tokenizer, trace["prompt"], trace["reasoning"], trace["answer"])
    ids = example["input_ids"]
    trained = torch.tensor([label != IGNORE for label in example["labels"][1:]])  # the completion + EOS
    prompt = tokenizer.apply_chat_template(trace["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"]

    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    hf_merged, hf_base = _token_logprobs(merged, ids), _token_logprobs(base, ids)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                                        str(result.adapter_dir))
    torch.testing.assert_close(_token_logprobs(adapted, ids), hf_merged, atol=1e-4, rtol=1e-4)

    llm = shared_llm(str(result.merged_dir), VLLMConfig(kv_cache_gib=1, max_model_len=1024, dtype="float32",
                                                        enforce_eager=True),
                     seed=0)
    try:
        scored, written = llm.generate(
            [{"prompt_token_ids": ids}, {"prompt_token_ids": prompt}],
            [SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0),
             SamplingParams(max_tokens=16, temperature=0.0)])
    finally:
        shutdown_llm()
    vllm_logprobs = torch.tensor([entry[token].logprob for entry, token in zip(scored.prompt_logprobs[1:], ids[1:])])
    torch.testing.assert_close(vllm_logprobs, hf_merged, atol=2e-3, rtol=1e-3)   # vLLM serves these weights
    assert vllm_logprobs[trained].mean() > hf_base[trained].mean() + 0.2         # the student learned
    assert len(written.outputs[0].token_ids) > 0                                  # and it writes
