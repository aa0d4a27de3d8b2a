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

On-policy distillation (`kd:`): each step the student samples prompts_per_step x samples_per_prompt completions,
the teacher runs one no-grad forward over prompt + completion to score every token, and the student one forward
and backward over the same tokens. Per step, with N the student's (base) parameters and N_T the teacher's:
sampling 2 N x completion tokens (decode, at the decode utilisation above; the prompt's prefill is not counted),
the teacher's scoring 2 N_T x (prompt + completion) tokens, the update k N x (prompt + completion) tokens with
SFT's k and utilisation; times kd.max_steps. Completions are the measured mean of the kd log when the run has
one, else max_completion_length (the batch is padded to its longest completion, which at R1's lengths reaches the
cap); prompts are assumed 256 tokens (as `distill.kd.dry_run`). Memory is `distill.kd.onpolicy.step_memory`, the
dry run's estimate on a GPU: the student's training state and activations, the teacher's weights in
teacher_dtype and its fp32 completion logits, all on one device (kd runs on one).

Stages that do not run are not planned: a recipe whose kd (or rl) trains a model of its own (kd.model) has no
generation and no SFT.

Every assumption is an option, and the output lists the ones used.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from distill.config import KDConfig, Recipe
from distill.errors import DistillError
from distill.gpus import GPUS, measured_sft_utilisation
from distill.jsonl import count_lines
from distill.sft.memory import GIB, STRATEGIES, ModelShape, estimate

CONFIGS = Path(__file__).parent / "data" / "configs"  # public config.json of the R1 students, for offline plans


# Teachers too large to count here (and not shipped): total and active (per token) parameters.
TEACHERS = {"deepseek-ai/DeepSeek-R1": (671e9, 37e9), "deepseek-ai/DeepSeek-R1-0528": (671e9, 37e9),
            "deepseek-ai/DeepSeek-V3": (671e9, 37e9)}
FORWARD_FLOPS = 2  # per parameter and token of a forward pass: a multiply and an add
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


def base_parameters(counts, method: str) -> int:
    """The model's own parameters: the total less the adapters LoRA/QLoRA add (their FLOPs are negligible)."""
    return counts.total - (counts.trainable if method != "full" else 0)


def training_flops(counts, method: str, gradient_checkpointing: bool, tokens: float) -> tuple[int, float]:
    """(k, k x base parameters x tokens): the FLOPs of training on `tokens`, sft's and kd's update alike."""
    k = training_flops_per_token(method, gradient_checkpointing)
    return k, k * base_parameters(counts, method) * tokens


def gpu_hours(flops: float, utilisation: float, card) -> float:
    return flops / (utilisation * card.bf16_tflops * 1e12) / 3600


def gpu_precision(precision: str) -> str:
    """A recipe's training precision on a GPU: auto is bf16 there."""
    return "bf16" if precision in ("auto", "bf16") else precision


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
    counts, _ = _model_counts(model_source(model), True)
    return float(counts.total), float(counts.total)


@functools.lru_cache(maxsize=32)
def _model_counts(source: str, full: bool, lora_json: str = "{}"):
    """Parameter counts on the meta device, once per model and adapter shape (LoRA and QLoRA share them)."""
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


def _measured_completion_tokens(kd: KDConfig) -> float | None:
    """The mean completion length over the steps of the recipe's kd log, when it has run."""
    log = Path(kd.output_dir) / "log.jsonl" if kd.output_dir is not None else None
    if log is None or not log.exists():
        return None
    lengths = [row["completion_length"] for row in map(json.loads, log.read_text().splitlines())
               if "completion_length" in row]
    return sum(lengths) / len(lengths) if lengths else None


def _imported(recipe: Recipe, generated: int, mean_tokens: float) -> dict[str, Any]:
    """The generation row of a recipe that imports its traces: no teacher run, nothing to pay."""
    return {"teacher": f"imported: {recipe.import_traces.source}", "teacher_params_b": 0.0, "active_params_b": 0.0,
            "traces_generated": generated, "output_tokens": generated * mean_tokens, "tokens_per_s_per_gpu": 0.0,
            "gpus_per_replica": 0, "gpu_hours": 0.0, "usd": 0.0}


def plan(recipe: Recipe, *, gpu: str = "h100", traces: int | None = None, keep_rate: float | None = None,
         mean_tokens: float | None = None, teacher: str | None = None, teacher_params: float | None = None,
         usd_per_hour: float | None = None, kd_prompt_tokens: float | None = None,
         kd_completion_tokens: float | None = None) -> dict[str, Any]:
    """The plan as a dict (see the module docstring for every formula); a stage that does not run is None."""
    from distill.stages.base import own_model

    if gpu not in GPUS:
        raise DistillError(f"plan: unknown GPU '{gpu}'; known: {', '.join(GPUS)}")
    card = GPUS[gpu]
    price = usd_per_hour if usd_per_hour is not None else card.usd_per_hour
    assumed: list[str] = []
    measured = measured_sft_utilisation(card.name)
    assumption = "assumed: what well-tuned FSDP/ZeRO-3 runs of 7-70B models report"
    sft_utilisation, utilisation_source = measured or (SFT_UTILISATION, assumption)
    if measured is None:
        assumed.append(f"SFT at {SFT_UTILISATION:.0%} model FLOP utilisation (not measured on {card.name})")

    generation = training = distillation = None
    if not own_model(recipe):  # generate, filter and sft run (kd or rl, if any, start from sft's student)
        traces, keep_rate, mean_tokens, generation, training = _generation_and_sft(
            recipe, card, price, sft_utilisation, assumed, traces=traces, keep_rate=keep_rate,
            mean_tokens=mean_tokens, teacher=teacher, teacher_params=teacher_params)
    if recipe.kd is not None:
        distillation = _kd(recipe, card, price, sft_utilisation, assumed, prompt_tokens=kd_prompt_tokens,
                           completion_tokens=kd_completion_tokens)
    hours = sum(row["gpu_hours"] for row in (generation, training, distillation) if row is not None)
    return {"recipe": recipe.name, "gpu": card.name, "gpu_memory_gib": card.memory_gib, "usd_per_gpu_hour": price,
            "traces": traces, "keep_rate": keep_rate,
            "mean_trace_tokens": round(mean_tokens, 1) if mean_tokens is not None else None,
            "generation": generation, "sft": training, "kd": distillation,
            "total": {"gpu_hours": round(hours, 2), "usd": round(hours * price, 2)},
            "gpu_peak": {"bf16_tflops": card.bf16_tflops, "source": card.source},
            "utilisation": {"decode": DECODE_UTILISATION, "sft": sft_utilisation, "sft_source": utilisation_source},
            "assumed": assumed}


def _generation_and_sft(recipe: Recipe, card, price: float, sft_utilisation: float, assumed: list[str], *,
                        traces: int | None, keep_rate: float | None, mean_tokens: float | None, teacher: str | None,
                        teacher_params: float | None):
    """(traces, keep rate, mean trace tokens, the generation row, the sft row)."""
    gen, sft = recipe.generate, recipe.sft
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
        generation = _imported(recipe, generated, mean_tokens)
    else:
        teacher = teacher or gen.model
        total, active = _teacher_params(teacher, teacher_params)
        output_tokens = generated * mean_tokens
        per_gpu = DECODE_UTILISATION * card.bf16_tflops * 1e12 / (FORWARD_FLOPS * active)
        gen_hours = output_tokens / per_gpu / 3600
        weight_bytes = total * (1 if teacher in TEACHERS else 2)  # R1 ships FP8 weights; others bf16
        replica_gpus = 2 ** math.ceil(math.log2(max(1.0, weight_bytes * 1.25 / (card.memory_gib * GIB))))
        generation = {"teacher": teacher, "teacher_params_b": round(total / 1e9, 3),
                      "active_params_b": round(active / 1e9, 3), "traces_generated": generated,
                      "output_tokens": output_tokens, "tokens_per_s_per_gpu": round(per_gpu, 1),
                      "gpus_per_replica": replica_gpus, "gpu_hours": round(gen_hours, 2),
                      "usd": round(gen_hours * price, 2)}

    # ---- sft
    counts, model_config = _model_counts(model_source(sft.model), sft.method == "full", sft.lora.model_dump_json())
    epochs = sft.epochs if sft.max_steps <= 0 else 1.0
    sft_tokens = traces * mean_tokens * epochs
    k, flops = training_flops(counts, sft.method, sft.gradient_checkpointing, sft_tokens)
    sft_hours = gpu_hours(flops, sft_utilisation, card)
    shape = ModelShape.from_config(model_config)
    per_device = {world: estimate(shape, counts, method=sft.method, precision=gpu_precision(sft.precision),
                                  max_length=sft.max_length, per_device_batch_size=sft.per_device_batch_size,
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
    return traces, keep_rate, mean_tokens, generation, training


def _kd(recipe: Recipe, card, price: float, utilisation: float, assumed: list[str], *,
        prompt_tokens: float | None, completion_tokens: float | None) -> dict[str, Any]:
    """The kd row: the student's sampling, the teacher's scoring and the student's update, per step and for
    max_steps, with the memory of one step on one device beside the student's."""
    from distill.kd.onpolicy import ASSUMED_PROMPT_TOKENS, step_memory
    from distill.stages.base import follows_sft

    kd = recipe.kd
    # After sft, kd trains sft's student (not there yet when planning): the same architecture as sft.model.
    student = recipe.sft.model if follows_sft(recipe, "kd") else kd.model
    counts, model_config = _model_counts(model_source(student), kd.method == "full", kd.lora.model_dump_json())
    teacher_counts, teacher_config = _model_counts(model_source(kd.teacher), True)
    if prompt_tokens is None:
        prompt_tokens = ASSUMED_PROMPT_TOKENS
        assumed.append(f"kd prompts of {prompt_tokens} tokens (as distill.kd.dry_run)")
    if completion_tokens is None:
        completion_tokens = _measured_completion_tokens(kd)
    if completion_tokens is None:
        completion_tokens = kd.max_completion_length
        assumed.append(f"kd completions of max_completion_length {completion_tokens} tokens (the batch is padded "
                       "to its longest)")
    sequences = kd.prompts_per_step * kd.samples_per_prompt
    generated, scored = sequences * completion_tokens, sequences * (prompt_tokens + completion_tokens)
    student_params, teacher_params = base_parameters(counts, kd.method), teacher_counts.total
    k, update = training_flops(counts, kd.method, kd.gradient_checkpointing, scored)
    step = {"sampling": FORWARD_FLOPS * student_params * generated,
            "teacher": FORWARD_FLOPS * teacher_params * scored, "update": update}
    step["total"] = sum(step.values())
    steps = kd.max_steps
    hours = {"sampling": gpu_hours(step["sampling"] * steps, DECODE_UTILISATION, card),
             "teacher": gpu_hours(step["teacher"] * steps, utilisation, card),
             "update": gpu_hours(step["update"] * steps, utilisation, card)}
    total_hours = sum(hours.values())

    precision = gpu_precision(kd.precision)
    memory = step_memory(kd, counts, model_config, teacher_counts, teacher_config, precision=precision,
                         world_size=1, prompt_tokens=int(prompt_tokens), device="gpu")
    parts = memory["breakdown_gib_one_device"]
    per_device = memory["per_device_gib"]["ddp"]
    extras = parts["teacher_weights"] + parts["teacher_logits"] + parts["sampling_copy"]
    return {"student": student, "teacher": kd.teacher, "method": kd.method,
            "params_b": round(student_params / 1e9, 3), "teacher_params_b": round(teacher_params / 1e9, 3),
            "parameter_ratio": round(teacher_params / student_params, 3), "steps": steps,
            "completions_per_step": sequences, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "per_step": {"generated_tokens": generated, "scored_tokens": scored, "flops": step},
            "flops": {part: value * steps for part, value in step.items()}, "flops_per_param_token": k,
            "gpu_hours_by_part": {part: round(value, 2) for part, value in hours.items()},
            "gpu_hours": round(total_hours, 2), "usd": round(total_hours * price, 2),
            "teacher_dtype": precision if kd.teacher_dtype == "auto" else kd.teacher_dtype,
            "memory_gib": {"student": round(per_device - extras, 3), "teacher_weights": parts["teacher_weights"],
                           "teacher_logits": parts["teacher_logits"], "per_device": per_device},
            "fits_one_gpu": per_device <= 0.9 * card.memory_gib}


def print_plan(result: dict[str, Any], console) -> None:
    """`distill plan`'s table: one row per stage that runs, then the peak, utilisation, memory and assumptions."""
    from rich.table import Table

    gen, sft, kd = result["generation"], result["sft"], result["kd"]
    table = Table(title=f"{result['recipe']} on {result['gpu']} (${result['usd_per_gpu_hour']}/GPU-hour)")
    for column in ("stage", "what", "GPU-hours", "USD"):
        table.add_column(column)
    if gen is not None:
        table.add_row("generate", f"{gen['teacher']}: {gen['traces_generated']:,} traces, "
                      f"{gen['output_tokens']:.3g} tokens, {gen['tokens_per_s_per_gpu']:.0f} tok/s/GPU, "
                      f"{gen['gpus_per_replica']} GPUs a replica", f"{gen['gpu_hours']:,.0f}", f"{gen['usd']:,.0f}")
    if sft is not None:
        gpus = ", ".join(f"{k} {v or '-'}" for k, v in sft["min_gpus_by_strategy"].items())
        table.add_row("sft", f"{sft['student']} {sft['method']}: {sft['tokens']:.3g} tokens, "
                      f"{sft['flops']:.3g} FLOPs; fewest GPUs: {gpus}",
                      f"{sft['gpu_hours']:,.0f}", f"{sft['usd']:,.0f}")
    if kd is not None:
        flops = kd["flops"]
        table.add_row("kd", f"{kd['student']} {kd['method']} from {kd['teacher']} ({kd['parameter_ratio']:.1f}x "
                      f"its parameters): {kd['steps']} steps x {kd['completions_per_step']} completions of "
                      f"{kd['completion_tokens']:.0f} tokens; FLOPs: student sampling {flops['sampling']:.3g}, "
                      f"teacher scoring {flops['teacher']:.3g}, student update {flops['update']:.3g}",
                      f"{kd['gpu_hours']:,.0f}", f"{kd['usd']:,.0f}")
    table.add_row("total", "", f"{result['total']['gpu_hours']:,.0f}", f"{result['total']['usd']:,.0f}")
    console.print(table)
    utilisation = result["utilisation"]
    console.print(f"peak {result['gpu_peak']['bf16_tflops']} TFLOP/s bf16 ({result['gpu_peak']['source']}); "
                  f"SFT at {utilisation['sft']:.0%} utilisation ({utilisation['sft_source']})"
                  + (f"; kd's scoring and update at SFT's, its sampling at decode's {utilisation['decode']:.0%}"
                     if kd is not None else ""), highlight=False, markup=False)
    if gen is None and sft is None:
        console.print("generate, filter and sft do not run: the recipe trains a model of its own", highlight=False)
    for name, row in (sft["memory_per_device_gib"].items() if sft is not None else ()):
        console.print(f"memory per device, {name.replace('_', ' ')}: "
                      + ", ".join(f"{k} {v:.1f} GiB" for k, v in row.items()))
    if kd is not None:
        memory = kd["memory_gib"]
        verdict = "fits" if kd["fits_one_gpu"] else "does not fit"
        console.print(f"kd memory on one device: student {memory['student']:.1f} GiB + teacher weights "
                      f"{memory['teacher_weights']:.1f} GiB ({kd['teacher_dtype']}) + teacher logits "
                      f"{memory['teacher_logits']:.1f} GiB = {memory['per_device']:.1f} GiB ({verdict} 90% of one "
                      f"{result['gpu']}, {result['gpu_memory_gib']} GiB)", highlight=False)
    for line in result["assumed"]:
        console.print(f"[yellow]assumed[/] {line}")
