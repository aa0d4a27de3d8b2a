"""`distill plan RECIPE`: GPU-hours, cost, memory per device and GPUs needed, before anything runs.

Generation: output tokens = traces to generate x mean trace length, where traces to generate = the SFT
traces wanted / the filter's keep rate, and the mean length is measured (the recipe's traces.stats.json)
or assumed (a third of max_tokens). Decode throughput per GPU = decode utilisation x the GPU's dense bf16
peak / (2 x the teacher's active parameters). Anchor: DeepSeek's own R1 serving reached ~1,850 output
tokens/s per H800 (DeepSeek-V3/R1 inference system overview, 2025), 2 x 37B x 1,850 = 0.14 of the
H800's 989 TFLOP/s; an open-source vLLM deployment is assumed to reach 0.10.

SFT: FLOPs = k x trained parameters' model size x tokens x epochs, with k = 6 for a full fine-tune (2
forward + 4 backward) and 4 for LoRA/QLoRA (no weight gradients for the frozen base), plus 2 when gradient
checkpointing recomputes the forward; at the model FLOP utilisation the GPU check measured on that GPU
(bench/gpu/check.py, `distill.gpus.measured_sft_utilisation`), else 40% (what well-tuned FSDP/ZeRO-3 runs of
7-70B models report). The GPU's peak comes from `distill.gpus`, each with its datasheet. Memory per device for DDP, FSDP and ZeRO-3 comes from `distill.sft.memory` with
the GPU loss path; the GPUs needed are the fewest (a power of two, up to 512) whose per-device memory fits
90% of the card.

Every assumption is an option, and the output lists the ones used.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from distill.config import Recipe
from distill.errors import DistillError
from distill.gpus import GPUS, measured_sft_utilisation
from distill.jsonl import count_lines
from distill.sft.memory import GIB, STRATEGIES, ModelShape, estimate

CONFIGS = Path(__file__).parent / "data" / "configs"  # public config.json of the R1 students, for offline plans


# Teachers too large to count here (and not shipped): total and active (per token) parameters.
TEACHERS = {"deepseek-ai/DeepSeek-R1": (671e9, 37e9), "deepseek-ai/DeepSeek-R1-0528": (671e9, 37e9),
            "deepseek-ai/DeepSeek-V3": (671e9, 37e9)}
DECODE_UTILISATION = 0.10
SFT_UTILISATION = 0.40
DEFAULT_TRACES = 800_000  # R1's distillation set: ~600k reasoning + ~200k other samples
DEFAULT_KEEP_RATE = 0.5
WORLD_SIZES = [2 ** i for i in range(10)]


# R1's distilled models keep the architecture of the model each was fine-tuned from (DeepSeek-AI 2025,
# section 2.4), so the shipped config of that base counts their parameters offline.
FINE_TUNED_FROM = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": "Qwen/Qwen2.5-Math-1.5B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": "Qwen/Qwen2.5-Math-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": "Qwen/Qwen2.5-14B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": "Qwen/Qwen2.5-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": "meta-llama/Llama-3.1-8B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": "meta-llama/Llama-3.3-70B-Instruct",
}


def training_flops_per_token(method: str, gradient_checkpointing: bool) -> int:
    """FLOPs per trained token per parameter: 6 full (2 forward + 4 backward), 4 LoRA/QLoRA (no weight gradients
    for the frozen base), plus 2 when gradient checkpointing recomputes the forward."""
    return (6 if method == "full" else 4) + (2 if gradient_checkpointing else 0)


def model_source(model: str) -> str:
    """A folder or hub id whose config.json describes `model`: the shipped snapshot first (works offline)."""
    shipped = CONFIGS / FINE_TUNED_FROM.get(model, model).replace("/", "--")
    if (shipped / "config.json").exists():
        return str(shipped)
    from distill.models import resolve_model

    return resolve_model(model)


def _teacher_params(model: str, override: float | None) -> tuple[float, float]:
    if override:
        return override, override
    if model in TEACHERS:
        return TEACHERS[model]
    from distill.config import SFTConfig
    from distill.sft.modeling import count_parameters

    counts, _ = count_parameters(model_source(model), SFTConfig(model=model, method="full"))
    return float(counts.total), float(counts.total)


@functools.lru_cache(maxsize=32)
def _student_counts(source: str, full: bool, lora_json: str):
    """Parameter counts on the meta device, once per student and adapter shape (LoRA and QLoRA share them)."""
    from distill.config import LoraConfig, SFTConfig
    from distill.sft.modeling import count_parameters

    config = SFTConfig(method="full" if full else "lora", lora=LoraConfig.model_validate_json(lora_json))
    return count_parameters(source, config)


def _measured_trace_tokens(recipe: Recipe) -> float | None:
    from distill.layout import RunLayout

    stats_path = RunLayout.of(recipe).traces_stats
    if not stats_path.exists():
        return None
    tokens = json.loads(stats_path.read_text()).get("completion_tokens", {})
    return tokens.get("mean")


def _imported(recipe: Recipe, generated: int, mean_tokens: float) -> dict[str, Any]:
    """The generation row of a recipe that imports its traces: no teacher run, nothing to pay."""
    return {"teacher": f"imported: {recipe.import_traces.source}", "teacher_params_b": 0.0, "active_params_b": 0.0,
            "traces_generated": generated, "output_tokens": generated * mean_tokens, "tokens_per_s_per_gpu": 0.0,
            "gpus_per_replica": 0, "gpu_hours": 0.0, "usd": 0.0}


def plan(recipe: Recipe, *, gpu: str = "h100", traces: int | None = None, keep_rate: float | None = None,
         mean_tokens: float | None = None, teacher: str | None = None, teacher_params: float | None = None,
         usd_per_hour: float | None = None) -> dict[str, Any]:
    """The plan as a dict (see the module docstring for every formula)."""
    if gpu not in GPUS:
        raise DistillError(f"plan: unknown GPU '{gpu}'; known: {', '.join(GPUS)}")
    card = GPUS[gpu]
    price = usd_per_hour if usd_per_hour is not None else card.usd_per_hour
    gen, sft = recipe.generate, recipe.sft
    assumed: list[str] = []
    measured = measured_sft_utilisation(card.name)
    assumption = "assumed: what well-tuned FSDP/ZeRO-3 runs of 7-70B models report"
    sft_utilisation, utilisation_source = measured or (SFT_UTILISATION, assumption)
    if measured is None:
        assumed.append(f"SFT at {SFT_UTILISATION:.0%} model FLOP utilisation (not measured on {card.name})")

    train_file = Path(sft.train_file) if sft.train_file else None
    if traces is None and train_file is not None and train_file.exists():
        traces = count_lines(train_file)
    if traces is None:
        traces, _ = DEFAULT_TRACES, assumed.append(f"{DEFAULT_TRACES} SFT traces (R1's distillation set)")
    if keep_rate is None:
        keep_rate, _ = DEFAULT_KEEP_RATE, assumed.append(f"filter keeps {DEFAULT_KEEP_RATE:.0%} of traces")
    if mean_tokens is None:
        mean_tokens = _measured_trace_tokens(recipe)
    if mean_tokens is None:
        mean_tokens = gen.sampling.max_tokens / 3
        assumed.append(f"mean trace {mean_tokens:.0f} tokens (a third of max_tokens {gen.sampling.max_tokens})")
    if not 0 < keep_rate <= 1:
        raise DistillError(f"plan: keep_rate must be in (0, 1], got {keep_rate}")

    # ---- generation (none when the recipe imports a public trace set: the teacher already ran)
    generated = math.ceil(traces / keep_rate)
    if recipe.import_traces is not None and teacher is None:
        generation, gen_hours = _imported(recipe, generated, mean_tokens), 0.0
    else:
        teacher = teacher or gen.model
        total, active = _teacher_params(teacher, teacher_params)
        output_tokens = generated * mean_tokens
        per_gpu = DECODE_UTILISATION * card.bf16_tflops * 1e12 / (2 * active)
        gen_hours = output_tokens / per_gpu / 3600
        weight_bytes = total * (1 if teacher in TEACHERS else 2)  # R1 ships FP8 weights; others bf16
        replica_gpus = 2 ** math.ceil(math.log2(max(1.0, weight_bytes * 1.25 / (card.memory_gib * GIB))))
        generation = {"teacher": teacher, "teacher_params_b": round(total / 1e9, 3),
                      "active_params_b": round(active / 1e9, 3), "traces_generated": generated,
                      "output_tokens": output_tokens, "tokens_per_s_per_gpu": round(per_gpu, 1),
                      "gpus_per_replica": replica_gpus, "gpu_hours": round(gen_hours, 2),
                      "usd": round(gen_hours * price, 2)}

    # ---- sft
    counts, model_config = _student_counts(model_source(sft.model), sft.method == "full", sft.lora.model_dump_json())
    base_params = counts.total - (counts.trainable if sft.method != "full" else 0)
    epochs = sft.epochs if sft.max_steps <= 0 else 1.0
    sft_tokens = traces * mean_tokens * epochs
    k = training_flops_per_token(sft.method, sft.gradient_checkpointing)
    flops = k * base_params * sft_tokens
    sft_hours = flops / (sft_utilisation * card.bf16_tflops * 1e12) / 3600
    precision = "bf16" if sft.precision in ("auto", "bf16") else sft.precision
    shape = ModelShape.from_config(model_config)
    per_device = {world: estimate(shape, counts, method=sft.method, precision=precision, max_length=sft.max_length,
                                  per_device_batch_size=sft.per_device_batch_size,
                                  gradient_checkpointing=sft.gradient_checkpointing, world_size=world,
                                  double_quant=sft.quant.double_quant, optim=sft.optim,
                                  loss_path="trl_chunked", device="gpu")["per_device_gib"]
                  for world in WORLD_SIZES}
    budget = 0.9 * card.memory_gib
    fits = {strategy: next((w for w in ([1] if strategy == "ddp" else WORLD_SIZES)  # replicas never shrink
                            if per_device[w][strategy] <= budget), None) for strategy in STRATEGIES}
    memory = {f"world_{w}": per_device[w] for w in (1, 8)}
    needed = min((w for w in fits.values() if w), default=None)
    training = {"student": sft.model, "method": sft.method, "params_b": round(counts.total / 1e9, 3),
                "trainable_params_b": round(counts.trainable / 1e9, 4), "tokens": sft_tokens, "epochs": epochs,
                "flops": flops, "flops_per_param_token": k, "gpu_hours": round(sft_hours, 2),
                "usd": round(sft_hours * price, 2), "memory_per_device_gib": memory,
                "min_gpus_by_strategy": fits, "min_gpus": needed}
    return {"recipe": recipe.name, "gpu": card.name, "gpu_memory_gib": card.memory_gib, "usd_per_gpu_hour": price,
            "traces": traces, "keep_rate": keep_rate, "mean_trace_tokens": round(mean_tokens, 1),
            "generation": generation, "sft": training,
            "total": {"gpu_hours": round(gen_hours + sft_hours, 2), "usd": round((gen_hours + sft_hours) * price, 2)},
            "gpu_peak": {"bf16_tflops": card.bf16_tflops, "source": card.source},
            "utilisation": {"decode": DECODE_UTILISATION, "sft": sft_utilisation, "sft_source": utilisation_source},
            "assumed": assumed}
