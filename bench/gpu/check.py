"""The GPU check: one command on one GPU, no network, under 10 minutes; the same script rehearsed on the CPU.

    python bench/gpu/check.py               # on the GPU machine, from the repository root (~6-8 min on an H200)
    python bench/gpu/check.py --rehearse    # the same parts on the CPU with a 2-layer model (make gpu-check-rehearse)
    python bench/gpu/check.py --prepare     # here, with network: fill .whl/ (wheels + the bundled tokenizer)

What the GPU machine lacks travels in the ignored folder `.whl/` (`--prepare` fills it: `pip download --no-deps`
of the pure-Python packages distill needs there, plus the bundled tokenizer's files, ~10 MiB; vLLM's wheel does
not travel, so every rollout and generation measured here is transformers'). The check installs them with
`pip install --no-index --find-links .whl`, only those whose module is missing.

Then, each part in its own process with its own timeout, all against one randomly initialised model in the
shape of Qwen2.5-Math-1.5B (28 layers, hidden 1536, GQA 12/2 heads, vocabulary 151,936, tied embeddings)
with the bundled tokenizer, on synthetic R1-format traces packed to 4,096-token rows:

    peak        the GPU's measured dense bf16 matmul TFLOP/s (the MFU denominator)
    sft:*       distill full (defaults: deterministic, liger auto), deterministic off, liger off, LoRA,
                QLoRA, and TRL's SFTTrainer with its defaults on the same data: non-pad tokens/s after two
                warm-up steps, model FLOP utilisation, peak CUDA memory next to `distill sft --dry-run`'s
    grpo:*      a GRPO step, distill (transformers rollouts) vs TRL's GRPOTrainer defaults: median seconds
    generate    the transformers generation backend's output tokens/s

Model FLOPs a trained token = k x (N + layers x heads x head_dim x mean example length), k = 6 for a full
fine-tune and 4 with adapters (no weight gradients for the frozen base); N counts the matmul weights (the
tied embedding once, as the LM head). Recomputation by gradient checkpointing is not model FLOPs.

Each part appends to one results file: bench/results/gpu.json (every run kept) and gpu.md (the latest), or
under --results (the rehearsal writes to runs/gpu-check-rehearsal/). A part that fails or runs out of time is
recorded with its reason; the others still run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRY = ROOT / ".whl"
# module -> pip name: what distill needs on a GPU machine that has torch and transformers (and maybe nothing else)
NEEDED = {"trl": "trl", "datasets": "datasets", "pydantic": "pydantic", "math_verify": "math-verify",
          "latex2sympy2_extended": "latex2sympy2_extended", "liger_kernel": "liger-kernel",
          "bitsandbytes": "bitsandbytes", "peft": "peft", "accelerate": "accelerate", "yaml": "pyyaml",
          "rich": "rich", "typer": "typer", "psutil": "psutil", "safetensors": "safetensors"}

QWEN_1_5B = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
             "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 4096,
             "tie_word_embeddings": True, "rope_theta": 10000.0, "rms_norm_eps": 1e-6}
REHEARSAL = {**QWEN_1_5B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152, "max_position_embeddings": 512}


def sizes(rehearse: bool) -> dict:
    """Everything that differs between the GPU run and its CPU rehearsal."""
    if rehearse:
        return {"model": REHEARSAL, "max_length": 128, "traces": 24, "sft_steps": 3, "warmup": 1, "matmul": 256,
                "grpo_steps": 2, "completion": 8, "prompts_per_step": 2, "generations": 2, "gen_prompts": 4,
                "gen_tokens": 8, "budget_s": 600, "timeout_s": 60}  # the rehearsal runs code, it times nothing
    return {"model": QWEN_1_5B, "max_length": 4096, "traces": 400, "sft_steps": 14, "warmup": 2, "matmul": 8192,
            "grpo_steps": 3, "completion": 256, "prompts_per_step": 4, "generations": 8, "gen_prompts": 64,
            "gen_tokens": 256, "budget_s": 540, "timeout_s": 120}


# --------------------------------------------------------------------------------------------- setup
def prepare() -> None:
    """Fill .whl/ here (network): wheels of the installed versions, and the bundled tokenizer's files."""
    from importlib.metadata import version

    CARRY.mkdir(exist_ok=True)
    pins = []
    for name in NEEDED.values():
        try:
            pins.append(f"{name}=={version(name)}")
        except Exception:  # noqa: BLE001  (not installed here: let pip pick the newest)
            pins.append(name)
    pins += ["antlr4-python3-runtime==4.13.2", "pydantic-core", "annotated-types", "typing-inspection"]
    # --no-deps: the GPU machine has torch, numpy and the rest; the binary wheels (pydantic-core, bitsandbytes)
    # must match its Python: pass --python-version/--platform to pip for another one.
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(CARRY),
                    *pins], check=True)
    for wheel in CARRY.glob("bitsandbytes-*.whl"):
        slim_bitsandbytes(wheel)
    tokenizer_dir = CARRY / "tokenizer"
    from transformers import AutoTokenizer

    from distill.models import resolve_model

    AutoTokenizer.from_pretrained(resolve_model("bundled:tiny")).save_pretrained(tokenizer_dir)
    total = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file())
    print(f"{CARRY}: {total / 2 ** 20:.1f} MiB; carry it with the working tree (run(carry=['.whl']))")


# bitsandbytes ships one native library per CUDA/ROCm/XPU version (125 MB installed); a CUDA 12.6-13.2 machine
# needs one of these. Keeping only them is what lets the wheel travel.
BNB_KEEP = ("cpu", "cuda126", "cuda128", "cuda130", "cuda132")


def slim_bitsandbytes(wheel: Path) -> None:
    """Rewrite bitsandbytes' wheel without the native libraries for other CUDA/ROCm/XPU versions."""
    import re
    import zipfile

    slim = wheel.with_suffix(".slim")
    dropped = set()
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            library = re.search(r"libbitsandbytes_(\w+?)\.(so|dll|dylib)$", item.filename)
            if library and library.group(1) not in BNB_KEEP:
                dropped.add(item.filename)
                continue
            data = source.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = "".join(line for line in data.decode().splitlines(keepends=True)
                               if line.split(",", 1)[0] not in dropped).encode()
            target.writestr(item, data)
    slim.replace(wheel)


def install_missing() -> dict:
    missing = [name for module, name in NEEDED.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return {"installed": [], "missing": []}
    if not any(CARRY.glob("*.whl")):
        return {"installed": [], "missing": missing, "note": f"no wheels in {CARRY} (run --prepare where there is network)"}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(CARRY),
                           *missing], capture_output=True, text=True, check=False)
    still = [name for module, name in NEEDED.items() if importlib.util.find_spec(module) is None]
    return {"installed": sorted(set(missing) - set(still)), "missing": still,
            "pip_error": done.stderr[-1500:] if done.returncode else None}


def tokenizer_source() -> str:
    if (CARRY / "tokenizer" / "tokenizer_config.json").exists():
        return str(CARRY / "tokenizer")
    from distill.models import resolve_model

    return resolve_model("bundled:tiny")


# --------------------------------------------------------------------------------------------- parts
def part_model(work: Path, s: dict) -> dict:
    """The random Qwen2-shaped student and its training data (synthetic R1-format traces)."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from distill.config import MATH_PROMPT

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source())
    config = Qwen2Config(**s["model"], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    parameters = sum(p.numel() for p in model.parameters())
    # Traces of 15-90% of a row, like R1 traces against a 4k limit: words the tokenizer keeps whole.
    words = ["so", "the", "then", "we", "add", "sum", "is", "next", "check", "value", "step", "and", "one", "two"]
    rng = random.Random(0)
    lengths = []
    with open(work / "kept.jsonl", "w") as out:
        for i in range(s["traces"]):
            n = rng.randint(int(0.15 * s["max_length"]), int(0.9 * s["max_length"]))
            reasoning = " ".join(rng.choice(words) for _ in range(n))
            answer = f"The answer is $\\boxed{{{i}}}$."
            lengths.append(n)
            out.write(json.dumps({
                "problem_id": f"p{i}", "sample": 0, "teacher": "synthetic", "kept": True,
                "prompt": [{"role": "user", "content": MATH_PROMPT.format(problem=f"What is {i} + 0?")}],
                "completion": f"<think>\n{reasoning}\n</think>\n\n{answer}", "reasoning": reasoning,
                "answer": answer}) + "\n")
    return {"parameters": parameters, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "vocab": config.vocab_size, "traces": s["traces"], "mean_trace_words": round(statistics.mean(lengths), 1)}


def part_peak(work: Path, s: dict) -> dict:
    """Dense bf16 matmul FLOP/s, the best of a few timed batches: what this device really gives."""
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    n = s["matmul"]
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    best = 0.0
    for _ in range(5):
        reps = 20 if cuda else 4
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(reps):
            a @ b
        if cuda:
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - started))
    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    return {"device": device_name, "bf16_tflops": round(best / 1e12, 4), "matmul": n,
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1) if cuda else None}


def _model_flops_per_token(work: Path, method: str, mean_length: float) -> float:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(work / "model")
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    per_layer = c.hidden_size * (c.num_attention_heads * head_dim + 2 * kv) + c.num_attention_heads * head_dim * \
        c.hidden_size + 3 * c.hidden_size * c.intermediate_size
    matmul_weights = c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size
    attention = c.num_hidden_layers * c.num_attention_heads * head_dim * mean_length
    return (6 if method == "full" else 4) * (matmul_weights + attention)


def _peak_memory_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)


def part_sft(work: Path, s: dict, variant: str) -> dict:
    from distill.config import SFTConfig
    from distill.sft import dry_run, train

    options = {"distill-full": {}, "distill-full-nondeterministic": {"deterministic": False},
               "distill-full-liger-off": {"liger": "off"}, "distill-lora": {"method": "lora"},
               "distill-qlora": {"method": "qlora"}}[variant]
    if variant == "distill-qlora" and importlib.util.find_spec("bitsandbytes") is None:
        return {"skipped": "bitsandbytes is not installed"}
    if variant == "distill-full-liger-off":
        from distill.sft.loss import use_liger

        if not use_liger("auto"):
            return {"skipped": "liger=auto is off on this machine already (no CUDA or no liger-kernel): "
                               "the same run as sft:distill-full"}
    config = SFTConfig.model_validate({
        "model": str(work / "model"), "train_file": str(work / "kept.jsonl"), "output_dir": str(work / variant),
        "method": "full", "max_length": s["max_length"], "per_device_batch_size": 1,
        "gradient_accumulation_steps": 1, "max_steps": s["sft_steps"], "eval_fraction": 0.0, "save_steps": 10_000,
        "logging_steps": 1, "merge": False, "learning_rate": 1e-5, "warmup_ratio": 0.0, **options})
    estimate = dry_run(config)["memory"]
    result = train(config, progress=False)
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines() if '"loss"' in line]
    first, last = rows[s["warmup"] - 1], rows[-1]
    tokens_per_s = (last["tokens"] - first["tokens"]) / max(last["elapsed_s"] - first["elapsed_s"], 1e-9)
    m = result.metrics
    mean_length = m["data"]["mean_length"]
    return {"tokens_per_s": round(tokens_per_s, 1), "model_flops_per_token": _model_flops_per_token(
                work, config.method, mean_length), "steps": m["steps"], "timed_steps": len(rows) - s["warmup"],
            "loss_path": m["loss_path"], "deterministic": m["deterministic"], "attn": m["attn_implementation"],
            "packing_check": m["packing_check"], "precision": m["precision"], "method": config.method,
            "peak_memory_gib": _peak_memory_gib(), "peak_cuda_gib": m["peak_cuda_gib"],
            "dry_run_gib": estimate["per_device_gib"]["ddp"], "dry_run_breakdown_gib": estimate["breakdown_gib_one_device"],
            "padding_fraction": m["padding_fraction"], "train_loss": round(m["train_loss"], 4)}


def part_sft_trl(work: Path, s: dict) -> dict:
    """TRL's SFTTrainer with its defaults on the same traces (conversational messages, same max_length)."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from distill.chat_format import assistant_turn

    rows = [json.loads(line) for line in (work / "kept.jsonl").read_text().splitlines()]
    data = Dataset.from_list([{"messages": [*r["prompt"], {"role": "assistant",
                                                           "content": assistant_turn(r["reasoning"], r["answer"])}]}
                              for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    counted = {"real": 0, "padded": 0}

    class Counting(DataCollatorForLanguageModeling):
        def torch_call(self, examples):  # TRL's own default collator, counting on the CPU what it hands over
            batch = super().torch_call(examples)
            counted["real"] += int(batch["attention_mask"].sum())
            counted["padded"] += int(batch["attention_mask"].numel())
            return batch

    clock: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            clock.append((time.perf_counter(), counted["real"]))

    config = SFTConfig(output_dir=str(work / "trl"), max_steps=s["sft_steps"], max_length=s["max_length"],
                       report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                       use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=str(work / "model"), args=config, train_dataset=data, processing_class=tokenizer,
                         data_collator=Counting(pad_token_id=tokenizer.pad_token_id), callbacks=[Clock()])
    output = trainer.train()
    (t0, n0), (t1, n1) = clock[s["warmup"] - 1], clock[-1]
    # The collator runs one batch ahead of the step (the dataloader prefetches): the count at a step's end
    # is one batch early at both ends, so the difference is the tokens of the timed steps.
    mean_length = statistics.mean(len(tokenizer.apply_chat_template(r["messages"], tokenize=True))
                                  for r in data.select(range(min(32, len(data)))))
    return {"tokens_per_s": round((n1 - n0) / max(t1 - t0, 1e-9), 1),
            "model_flops_per_token": _model_flops_per_token(work, "full", mean_length), "steps": output.global_step,
            "timed_steps": len(clock) - s["warmup"], "peak_memory_gib": _peak_memory_gib(),
            "padding_fraction": round(1 - counted["real"] / max(counted["padded"], 1), 4),
            "train_loss": round(output.training_loss, 4), "method": "full",
            "settings": {"per_device_train_batch_size": config.per_device_train_batch_size, "bf16": config.bf16,
                         "gradient_checkpointing": config.gradient_checkpointing, "packing": config.packing,
                         "max_length": config.max_length, "learning_rate": config.learning_rate}}


def _rl_config(work: Path, s: dict, out: str):
    from distill.config import RewardConfig, RLConfig

    return RLConfig(model=str(work / "model"), problems=ROOT / "distill" / "data" / "demo" / "train.jsonl",
                    output_dir=work / out, num_generations=s["generations"], prompts_per_step=s["prompts_per_step"],
                    max_completion_length=s["completion"], max_steps=s["grpo_steps"], save_steps=10_000,
                    rewards=[RewardConfig(name="accuracy"), RewardConfig(name="format")], rollout="transformers")


def part_grpo_distill(work: Path, s: dict) -> dict:
    from distill.rl import train

    result = train(_rl_config(work, s, "grpo-distill"), progress=False)
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    seconds = [r["step_seconds"] for r in rows if "step_seconds" in r][1:] or [result.metrics["seconds_per_step"]]
    return {"seconds_per_step": round(statistics.median(seconds), 3), "rollout": result.metrics["rollout"],
            "method": result.metrics["method"], "precision": result.metrics["precision"],
            "peak_memory_gib": _peak_memory_gib()}


def part_grpo_trl(work: Path, s: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from distill.rl.data import build_prompts, read_problems
    from distill.rl.grpo import RewardColumns
    from distill.rl.rewards import RewardScorer, RewardSettings

    config = _rl_config(work, s, "grpo-trl")
    prompts = build_prompts(read_problems(config.problems), AutoTokenizer.from_pretrained(work / "model"), config)
    seconds: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds.append(time.perf_counter() - self.started)

    completions = s["prompts_per_step"] * s["generations"]
    with RewardScorer(["accuracy", "format"], RewardSettings(max_completion_length=s["completion"])) as scorer:
        trainer = GRPOTrainer(
            model=str(work / "model"), reward_funcs=RewardColumns(config, prompts, scorer).functions(),
            args=GRPOConfig(output_dir=str(work / "grpo-trl"), per_device_train_batch_size=completions,
                            num_generations=s["generations"], max_completion_length=s["completion"],
                            max_steps=s["grpo_steps"], report_to="none", save_strategy="no", logging_steps=1,
                            disable_tqdm=True, use_cpu=not torch.cuda.is_available()),
            train_dataset=Dataset.from_list(prompts.rows), callbacks=[Clock()])
        trainer.train()
    return {"seconds_per_step": round(statistics.median(seconds[1:] or seconds), 3),
            "peak_memory_gib": _peak_memory_gib()}


def part_generate(work: Path, s: dict) -> dict:
    from distill.config import GenerateConfig
    from distill.generation.backends.base import Request
    from distill.generation.backends.hf_backend import HFBackend

    config = GenerateConfig.model_validate({"model": str(work / "model"), "backend": "hf",
                                            "sampling": {"max_tokens": s["gen_tokens"], "temperature": 0.6},
                                            "hf": {"batch_size": s["gen_prompts"], "dtype": "bfloat16"}})
    backend = HFBackend(config)
    requests = [Request(f"p{i}", 0, [{"role": "user", "content": f"What is {i} + {i}?"}], key=i)
                for i in range(s["gen_prompts"])]
    for r in requests:
        backend.prepare(r)
    list(backend.generate(requests[:2], 2))  # warm-up
    started = time.perf_counter()
    done = list(backend.generate(requests, len(requests)))
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for _, c in done)
    return {"output_tokens_per_s": round(tokens / seconds, 1), "sequences": len(done), "tokens": tokens,
            "seconds": round(seconds, 2), "device": backend.device}


PARTS = {"model": part_model, "peak": part_peak,
         "sft:distill-full": lambda w, s: part_sft(w, s, "distill-full"),
         "sft:trl-defaults": part_sft_trl,
         "sft:distill-lora": lambda w, s: part_sft(w, s, "distill-lora"),
         "sft:distill-qlora": lambda w, s: part_sft(w, s, "distill-qlora"),
         "sft:distill-full-nondeterministic": lambda w, s: part_sft(w, s, "distill-full-nondeterministic"),
         "sft:distill-full-liger-off": lambda w, s: part_sft(w, s, "distill-full-liger-off"),
         "grpo:distill": part_grpo_distill, "grpo:trl-defaults": part_grpo_trl, "generate": part_generate}


# ------------------------------------------------------------------------------------------ results
def summarize(run: dict) -> dict:
    """MFU against the measured peak, the targets, and memory against the dry run."""
    parts = run["parts"]
    peak = (parts.get("peak") or {}).get("bf16_tflops")
    for name, part in parts.items():
        if name.startswith("sft:") and "tokens_per_s" in part and peak:
            part["mfu"] = round(part["tokens_per_s"] * part["model_flops_per_token"] / (peak * 1e12), 4)
        if "dry_run_gib" in part and part.get("peak_memory_gib"):
            part["memory_vs_dry_run"] = round(part["peak_memory_gib"] / part["dry_run_gib"] - 1, 3)
    ours, theirs = parts.get("sft:distill-full", {}), parts.get("sft:trl-defaults", {})
    verdict = {}
    if "tokens_per_s" in ours and "tokens_per_s" in theirs:
        verdict["sft_speedup_vs_trl"] = round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3)
    if "mfu" in ours:
        verdict["sft_full_mfu"] = ours["mfu"]
    grpo_ours, grpo_theirs = parts.get("grpo:distill", {}), parts.get("grpo:trl-defaults", {})
    if "seconds_per_step" in grpo_ours and "seconds_per_step" in grpo_theirs:
        verdict["grpo_speedup_vs_trl"] = round(grpo_theirs["seconds_per_step"] / grpo_ours["seconds_per_step"], 3)
    det, nondet = parts.get("sft:distill-full", {}), parts.get("sft:distill-full-nondeterministic", {})
    if "tokens_per_s" in det and "tokens_per_s" in nondet:
        verdict["deterministic_cost"] = round(1 - det["tokens_per_s"] / nondet["tokens_per_s"], 3)
    run["verdict"] = verdict
    run["targets"] = {"sft_full_mfu >= 0.40": verdict.get("sft_full_mfu", 0) >= 0.40,
                      "sft_speedup_vs_trl >= 1.3": verdict.get("sft_speedup_vs_trl", 0) >= 1.3,
                      "peak memory within 25% of the dry run": all(
                          abs(p["memory_vs_dry_run"]) <= 0.25 for p in parts.values() if "memory_vs_dry_run" in p)}
    return run


def render(run: dict) -> str:
    parts = run["parts"]
    peak = parts.get("peak", {})
    setup = (f"`{run['command']}` on {peak.get('device', '?')}: measured bf16 peak "
             f"{peak.get('bf16_tflops', '?')} TFLOP/s; model {json.dumps(parts.get('model', {}))}; "
             f"wall {run['wall_s']} s.")
    lines = [f"# GPU check ({'CPU rehearsal' if run['rehearse'] else 'GPU'}): {run['started']}", "", setup, "",
             "| part | tokens/s or s/step | MFU | peak memory GiB | dry run GiB | vs dry run | loss path | note |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, p in parts.items():
        if name in ("model", "peak"):
            continue
        rate = p.get("tokens_per_s", p.get("seconds_per_step", p.get("output_tokens_per_s", "")))
        note = p.get("skipped") or p.get("error", "")[:120].replace("\n", " ").replace("|", "/") or (f"rollout {p['rollout']}" if "rollout" in p else "")
        lines.append(f"| {name} | {rate} | {p.get('mfu', '')} | {p.get('peak_memory_gib', '')} | "
                     f"{p.get('dry_run_gib', '')} | {p.get('memory_vs_dry_run', '')} | {p.get('loss_path', '')} | "
                     f"{note} |")
    lines += ["", f"Verdict: {json.dumps(run['verdict'])}", "", f"Targets: {json.dumps(run['targets'])}", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- driver
def run_parts(names: list[str], work: Path, rehearse: bool, timeout: float) -> dict[str, dict]:
    """Run parts in one child process with a timeout; each part's result is a `PART name {json}` line."""
    command = [sys.executable, __file__, "--part", ",".join(names), "--work", str(work)] + \
        (["--rehearse"] if rehearse else [])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        stdout, failure = done.stdout, (done.stderr or done.stdout)[-2000:] if done.returncode else None
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        failure = f"timed out after {timeout:.0f} s"
    results = {}
    for line in stdout.splitlines():
        if line.startswith("PART "):
            name, _, payload = line[5:].partition(" ")
            results[name] = json.loads(payload)
    seconds = round(time.perf_counter() - started, 1)
    for name in names:
        results.setdefault(name, {"error": failure or "no result"})
        results[name].setdefault("seconds", seconds)
    return results


def worker(names: list[str], work: Path, s: dict) -> None:
    for name in names:
        started = time.perf_counter()
        try:
            result = PARTS[name](work, s)
        except Exception as exc:  # noqa: BLE001  (one failed part is a result; the next part still runs)
            import traceback

            result = {"error": f"{type(exc).__name__}: {exc}"[:1500], "traceback": traceback.format_exc()[-3000:]}
        result["seconds"] = round(time.perf_counter() - started, 1)
        print(f"PART {name} " + json.dumps(result, default=str), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearse", action="store_true", help="on the CPU with a 2-layer model")
    parser.add_argument("--prepare", action="store_true", help="fill .whl/ (needs network)")
    parser.add_argument("--results", type=Path, help="folder of gpu.json / gpu.md")
    parser.add_argument("--only", nargs="*", help="run only these parts (after model and peak)")
    parser.add_argument("--part")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    s = sizes(args.rehearse)
    if args.prepare:
        prepare()
        return
    if args.part:
        worker(args.part.split(","), args.work, s)
        return

    started = time.monotonic()
    results = args.results or (ROOT / "runs" / "gpu-check-rehearsal" if args.rehearse else ROOT / "bench" / "results")
    results.mkdir(parents=True, exist_ok=True)
    work = ROOT / "runs" / ("gpu-check-rehearsal-work" if args.rehearse else "gpu-check-work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rehearse": args.rehearse,
           "command": " ".join(["python bench/gpu/check.py", *sys.argv[1:]]), "install": install_missing(),
           "python": platform.python_version(), "parts": {}}
    wanted = ["model", "peak", *(args.only or [p for p in PARTS if p not in ("model", "peak")])]
    # On the GPU each part has a process of its own (its peak memory is its own, a crash or a hang costs one
    # part); the rehearsal runs them all in one process, since on 2 CPU cores the imports alone would take
    # most of its two minutes, and it exists to run every part's code, not to measure.
    groups = [wanted] if args.rehearse else [[name] for name in wanted]
    for group in groups:
        left = s["budget_s"] - (time.monotonic() - started)
        if left < 15:
            run["parts"].update({n: {"skipped": "out of time (the whole check fits one 10-minute command)"}
                                 for n in group})
            continue
        timeout = left if args.rehearse else min(s["timeout_s"], left)
        for name, result in run_parts(group, work, args.rehearse, timeout).items():
            run["parts"][name] = result
            print(f"{name}: {json.dumps(result)[:300]}", flush=True)
        if "error" in run["parts"].get("model", {}):
            break  # nothing else can run without the student
    run["wall_s"] = round(time.monotonic() - started, 1)
    summarize(run)
    store = results / "gpu.json"
    history = json.loads(store.read_text()) if store.exists() else {"runs": []}
    history["runs"].append(run)
    store.write_text(json.dumps(history, indent=2) + "\n")
    (results / "gpu.md").write_text(render(run))
    print(render(run))


if __name__ == "__main__":
    main()
