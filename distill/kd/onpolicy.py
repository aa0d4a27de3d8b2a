"""`distill kd`: on-policy distillation. The student samples, the teacher scores every sampled token, and the
student is trained to lower its per-token reverse KL to the teacher (tinker-cookbook's and Qwen3's recipe).

One step:
    1. sample      prompts_per_step problems x samples_per_prompt completions from the student (distill.kd.sampling:
                   vLLM reloading the student's weights each step, or transformers generate seeded by step); with
                   kd.overlap the next step's completions are drawn while this step trains, then importance-weighted
    2. score       the teacher's log-prob of every sampled token (one no-grad forward), the student's with grad
    3. advantage   -kl_coef * k(log s - log t) per token (+ each reward's weight x its group-centred value)
    4. update      policy-gradient loss, token mean, clipped, one optimizer step (loss=jsd: TRL's generalized
                   JSD over the full vocabulary instead)

Why a loop of our own and not TRL's DistillationTrainer: measured in bench/kd.py (bench/results/kd.md). The
reverse-KL advantage needs only the sampled token's log-prob from each model, which the forward passes give
anyway; TRL's trainer computes a full-vocabulary divergence in chunks and checkpoints activations by default.

Output folder (as `sft` and `rl`; distill.lifecycle resumes, saves and finishes it):
    checkpoints/checkpoint-N/   trainable weights, optimizer, scheduler, RNG; a rerun resumes from the newest
    log.jsonl, kd.png           per step: kl (sampled-token k1), kl_exact (full vocabulary), loss, rewards, ...
    disagreement.jsonl          per token, teacher - student log-prob on a few fixed answers, before and after
                                training (distill.kd.disagreement; `distill view` colours it)
    adapter/ + merged/ (LoRA, QLoRA)  or  model/ (full)
    kd_config.json, trained.json, metrics.json, result.json (written last)
"""
from __future__ import annotations

import math
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from distill.config import config_hash
from distill.errors import DistillError
from distill.files import atomic_write_json, read_json
from distill.jsonl import JsonlWriter
from distill.kd import disagreement
from distill.kd.config import KDConfig
from distill.kd.losses import (
    exact_reverse_kl,
    generalized_jsd,
    kl_estimate,
    masked_mean,
    policy_gradient_loss,
    reverse_kl_advantage,
    token_logprobs,
)
from distill.kd.sampling import Batch, StudentSampler, generate
from distill.kd.teacher import Teacher, check_tokenizers
from distill.lifecycle import (
    RunFolder,
    TrainResult,
    dry_run_basics,
    memory_estimate,
    parameters_report,
    peak_memory,
    rewound_log,
    save_trained,
)
from distill.models import resolve_model, shown_model
from distill.rollout import Rollout, choose_rollout
from distill.sft.modeling import DTYPES, load_model, lora_config, resolve_precision


# ------------------------------------------------------------------------------------------ setup
def student_path(config: KDConfig, out: Path) -> str:
    """The student to start from: a folder or hub id as is; an adapter folder merged into its base first."""
    from distill.sft.merge import starting_model

    if config.model is None:
        raise DistillError("kd.model is not set: the student (a base model, a merged SFT student or an adapter)")
    return starting_model(config.model, out / "initial_student")


def teacher_path(config: KDConfig) -> str:
    if config.teacher is None:
        raise DistillError("kd.teacher is not set: the model whose log-probs the student learns "
                           "(same tokenizer as the student)")
    return resolve_model(config.teacher)


def step_problems(ids: list[str], step: int, per_step: int, seed: int) -> list[str]:
    """The problems of `step` (0-based): epochs of seeded permutations, a pure function of the step."""
    chosen = []
    for slot in range(step * per_step, (step + 1) * per_step):
        epoch, index = divmod(slot, len(ids))
        order = list(ids)
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        chosen.append(order[index])
    return chosen


def lr_lambda(config: KDConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        if config.lr_scheduler == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(config.max_steps - config.warmup_steps, 1)
        if config.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


# ----------------------------------------------------------------------------------------- checkpoints
def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, keep: int | None) -> None:
    from safetensors.torch import save_file

    target = folder / f"checkpoint-{step}"
    staging = folder / f".checkpoint-{step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({n: p.detach().contiguous() for n, p in _trainable(model).items()}, staging / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, staging / "optimizer.pt")
    atomic_write_json(staging / "state.json", {"step": step})
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    if keep is not None:
        olds = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                      key=lambda p: int(p.name.split("-")[-1]))
        for old in olds[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(checkpoint: Path, model, optimizer, scheduler) -> int:
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "trainable.safetensors")
    params = _trainable(model)
    missing = set(params) - set(weights)
    if missing:
        raise DistillError(f"{checkpoint}: holds no weights for {sorted(missing)[:3]}; it belongs to another run")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(read_json(checkpoint / "state.json")["step"])


# ----------------------------------------------------------------------------------------------- a step
IS_CAP = 2.0  # kd.overlap's importance weight is truncated here (verl's TIS default, tis_imp_ratio_cap)


def student_logits(student, batch: Batch) -> torch.Tensor:
    positions = (batch.attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    keep = batch.completion_length
    out = student(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions,
                  logits_to_keep=keep + 1, use_cache=False)
    return out.logits[:, :-1]


def reward_advantage(config: KDConfig, scorer, prompts, batch: Batch, tokenizer) -> tuple[torch.Tensor, dict]:
    """Each reward's weight x its value minus the mean over the problem's samples (GRPO's centring, unscaled)."""
    from distill.rl.data import to_completions

    completion_ids = batch.input_ids[:, -batch.completion_length:]
    lengths = batch.completion_mask.sum(-1).tolist()
    texts = [tokenizer.decode(ids[:n], skip_special_tokens=True) for ids, n in zip(completion_ids, lengths)]
    completions = to_completions(prompts, batch.problem_ids, batch.users, texts, lengths,
                                 config.max_completion_length)
    columns = scorer.score(completions, config.samples_per_prompt)
    total = torch.zeros(len(texts))
    for reward in config.rewards:
        total += reward.weight * torch.tensor(columns[reward.name], dtype=torch.float32)
    grouped = total.view(-1, config.samples_per_prompt)
    centred = (grouped - grouped.mean(-1, keepdim=True)).view(-1)
    logged = {f"reward/{name}": float(sum(values) / len(values)) for name, values in columns.items()}
    logged["reward"] = float(total.mean())
    return centred, logged


def micro_batches(batch: Batch, size: int | None) -> list[tuple[Batch, slice]]:
    """The step's completions in slices of `size` (all of them when unset), each with its rows' slice."""
    total = len(batch.input_ids)
    size = size or total
    return [(batch.rows(slice(i, i + size)), slice(i, i + size)) for i in range(0, total, size)]


def accumulate_gradients(config: KDConfig, student, teacher: Teacher, batch: Batch, centred: torch.Tensor | None,
                         autocast, between=lambda: None) -> tuple[dict[str, float], float]:
    """Forward and backward over the step's completions, `micro_batch_size` at a time. Each micro-batch's
    token mean is weighted by its share of the step's tokens, so the summed loss, gradient and figures equal one
    pass over the whole step while only one micro-batch's logits (student's and teacher's) are held at once.
    `between` runs between the passes (kd.overlap: the trainer takes its cores back once the next draw is done).
    Returns the step's figures and the seconds the teacher's scoring took."""
    keep = batch.completion_length
    step_tokens = batch.completion_mask.sum().clamp(min=1)
    figures = dict.fromkeys(("kl", "kl_k3", "kl_exact", "loss") + (("is_weight",) if config.overlap else ()), 0.0)
    score_s = 0.0
    for part, rows in micro_batches(batch, config.micro_batch_size):
        started = time.perf_counter()
        completion_ids = part.input_ids[:, -keep:]
        teacher_logits = teacher.logits(part.input_ids, part.attention_mask, keep)
        score_s += time.perf_counter() - started
        between()
        with autocast():
            logits = student_logits(student, part)
        mask = part.completion_mask
        share = mask.sum() / step_tokens
        s_lp, t_lp = token_logprobs(logits, completion_ids), token_logprobs(teacher_logits, completion_ids)
        if config.loss == "reverse_kl":
            advantage = reverse_kl_advantage(s_lp, t_lp, estimator=config.estimator, coef=config.kl_coef)
        else:
            advantage = torch.zeros_like(s_lp)
        if centred is not None:
            advantage = advantage + centred[rows].unsqueeze(-1)
        if config.overlap:  # drawn one update ago: truncated importance weight s_now / s_sampler (verl's TIS, cap 2)
            weight = torch.exp(s_lp.detach() - part.sampler_logprobs).clamp(max=IS_CAP)
            advantage = advantage * weight
            figures["is_weight"] += float(masked_mean(weight, mask) * share)
        loss = policy_gradient_loss(s_lp, advantage, mask)
        if config.loss == "jsd":
            loss = loss + config.kl_coef * masked_mean(
                generalized_jsd(logits, teacher_logits, config.jsd_beta, config.temperature), mask)
        between()
        (loss * share).backward()
        with torch.no_grad():
            exact = masked_mean(torch.stack([exact_reverse_kl(logits[i].detach(), teacher_logits[i])
                                             for i in range(len(logits))]), mask)
            for name, value in (("kl", masked_mean(kl_estimate(s_lp.detach(), t_lp, "k1"), mask)),
                                ("kl_k3", masked_mean(kl_estimate(s_lp.detach(), t_lp, "k3"), mask)),
                                ("kl_exact", exact), ("loss", loss.detach())):
                figures[name] += float(value * share)
        del logits, teacher_logits
    return figures, score_s


# ---------------------------------------------------------------------------------- the disagreement record
def greedy_answers(model, tokenizer, rows: list[dict], config: KDConfig, stop_ids: list[int],
                   autocast) -> disagreement.Answers:
    """The model's greedy answers to `rows`: no sampling, so the record does not depend on the RNG."""
    from transformers import GenerationConfig

    generation = GenerationConfig(do_sample=False, max_new_tokens=disagreement.max_tokens(config.max_completion_length),
                                  eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    batch = generate(model, tokenizer, [row["prompt"] for row in rows], generation, stop_ids, autocast)
    return disagreement.answers_of(rows, *batch)


def record_disagreement(out: Path, phase: str, step: int, answers: disagreement.Answers, teacher: Teacher, student,
                        tokenizer, autocast, keep: tuple[str, ...]) -> None:
    """Both models' log-probs of `answers`, written as `phase` beside the rows of the phases in `keep`."""
    scores = disagreement.score(answers, teacher, student, tokenizer.pad_token_id, autocast)
    disagreement.write(out, disagreement.rows(phase, step, answers, scores, tokenizer), keep=keep)


# ------------------------------------------------------------------------------------------------ train
def _fit(config: KDConfig, run: RunFolder, state, model_path: str, teacher_dir: str, progress: bool,
         console) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from distill.problems import iter_problems
    from distill.rl.data import build_prompts

    out, checkpoints = run.out, run.out / "checkpoints"
    last = run.resume_point()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.problems is None or not Path(config.problems).exists():
        raise DistillError(f"kd.problems: {config.problems}: no such Problem JSONL (the prompts the student answers)")
    problems = {p.id: p for p in iter_problems(Path(config.problems), label="kd.problems")}
    prompts = build_prompts(problems, tokenizer, config)
    rows = {row["problem_id"]: row for row in prompts.rows}
    stop_ids = sorted({tokenizer.eos_token_id, *(
        [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>")
         if t in tokenizer.get_vocab()])})

    precision = resolve_precision(config.precision)
    compute = DTYPES[precision]
    teacher_dtype = compute if config.teacher_dtype == "auto" else DTYPES[config.teacher_dtype]
    student = load_model(model_path, config, precision)
    if config.method != "full":
        from peft import get_peft_model, prepare_model_for_kbit_training

        if config.method == "qlora":
            student = prepare_model_for_kbit_training(student, use_gradient_checkpointing=config.gradient_checkpointing)
        student = get_peft_model(student, lora_config(config))
    if config.gradient_checkpointing:
        student.gradient_checkpointing_enable({"use_reentrant": False})
    autocast = (lambda: torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=compute)) \
        if precision != "fp32" else nullcontext
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.method != "qlora":  # a 4-bit student is placed at load time and cannot be moved
        student.to(device)
    teacher = Teacher.load(teacher_dir, teacher_dtype, device)
    rollout = choose_rollout(config, precision)
    if config.overlap and rollout.backend != "vllm-reload":
        raise DistillError(f"kd.overlap=true needs vLLM rollouts (the draw runs in the engine's process while the "
                           f"step trains); this run samples with {rollout.backend}: {rollout.reason}")

    # fused: one kernel over all parameters (measured on the CPU, SmolLM2-135M full: 0.07 s a step, 0.39 s foreach)
    optimizer = torch.optim.AdamW(list(_trainable(student).values()), lr=config.learning_rate,
                                  weight_decay=config.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    probe = disagreement.probe_rows(prompts.rows)
    recording_s = 0.0
    if state.is_main_process and (last is None or not disagreement.has(out, "before")):
        # Before any checkpoint loads, the student is the initial one, even in a resumed run whose first start
        # left no record; a resumed run that has one keeps it.
        t0 = time.perf_counter()
        record_disagreement(out, "before", 0, greedy_answers(student, tokenizer, probe, config, stop_ids, autocast),
                            teacher, student, tokenizer, autocast, keep=())
        recording_s += time.perf_counter() - t0
    start = load_checkpoint(last, student, optimizer, scheduler) if last is not None else 0
    resumed_row = rewound_log(state, run.log_path, last)
    elapsed_before = float(resumed_row.get("elapsed_s", 0.0)) if resumed_row else 0.0
    tokens_before = int(resumed_row.get("tokens", 0)) if resumed_row else 0
    console.print(f"kd: {config.loss}{' (' + config.estimator + ')' if config.loss == 'reverse_kl' else ''}, "
                  f"{config.method}, {precision}; student {shown_model(model_path)}, teacher "
                  f"{shown_model(teacher_dir)}; {config.prompts_per_step} x {config.samples_per_prompt} completions "
                  f"a step, sampled by {rollout.backend}{' overlapping the update' if config.overlap else ''}"
                  + (f"; resuming after step {start}" if start else ""), highlight=False)

    scorer = None
    if config.rewards:
        from distill.rl.rewards import RewardScorer, RewardSettings, resolve_custom

        names = [r.name for r in config.rewards]
        scorer = RewardScorer(names, RewardSettings(math_timeout_s=config.math_timeout_s, sandbox=config.sandbox,
                                              answer_tag=config.template == "r1-zero",
                                              max_completion_length=config.max_completion_length,
                                              custom=resolve_custom(names)), config.reward_workers)
    ids = list(rows)
    writer = JsonlWriter(run.log_path, flush_every=1)
    sampler = StudentSampler(rollout, config, model_path, tokenizer, stop_ids, precision, autocast, resumed_at=start)
    started = time.perf_counter()
    tokens = tokens_before
    timings: dict[str, list[float]] = {"sample_s": [], "score_s": [], "update_s": []}
    next_draw = None  # kd.overlap: the next step's completions, being drawn while this step trains
    try:
        student.train()
        for step in range(start, config.max_steps):
            t0 = time.perf_counter()
            step_rows = [rows[i] for i in step_problems(ids, step, config.prompts_per_step, config.seed)]
            if next_draw is None:
                batch = sampler.draw(student, step_rows, step)
            else:
                batch = next_draw.result()  # drawn with the weights of one update ago
            if config.overlap and step + 1 < config.max_steps:
                next_rows = [rows[i] for i in step_problems(ids, step + 1, config.prompts_per_step, config.seed)]
                next_draw = sampler.start(student, next_rows, weights_at=step)
            batch = batch.to(device)
            t1 = time.perf_counter()
            row: dict[str, Any] = {"step": step + 1}
            centred = None
            if scorer is not None:  # rewards are centred over a problem's samples: the whole step's, at once
                centred, logged = reward_advantage(config, scorer, prompts, batch, tokenizer)
                centred = centred.to(device)
                row.update(logged)
            with sampler.training_beside(next_draw) as cores:
                figures, score_s = accumulate_gradients(config, student, teacher, batch, centred, autocast,
                                                        between=cores.widen)
                grad_norm = torch.nn.utils.clip_grad_norm_(list(_trainable(student).values()), config.max_grad_norm)
                optimizer.step()
            row.update(figures)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            t2 = t1 + score_s  # the teacher's scoring, summed over the micro-batches
            step_tokens = int(batch.attention_mask.sum())
            tokens += step_tokens
            for name, seconds in (("sample_s", t1 - t0), ("score_s", t2 - t1), ("update_s", t3 - t2)):
                timings[name].append(seconds)
            row.update({
                "grad_norm": float(grad_norm),
                "learning_rate": scheduler.get_last_lr()[0],
                "completion_length": float(batch.completion_mask.sum(-1).float().mean()), "tokens": tokens,
                "step_seconds": round(t3 - t0, 3), "sample_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3),
                "update_s": round(t3 - t2, 3),
                "elapsed_s": round(elapsed_before + time.perf_counter() - started, 3),
            })
            if (step + 1) % config.logging_steps == 0 or step + 1 == config.max_steps:
                writer.write(row)
            if progress:
                console.print(f"kd step {step + 1}/{config.max_steps}: kl {row['kl']:.4f} (exact "
                              f"{row['kl_exact']:.4f}), length {row['completion_length']:.0f}, "
                              f"{row['step_seconds']:.1f} s", highlight=False)
            if (step + 1) % config.save_steps == 0 or step + 1 == config.max_steps:
                save_checkpoint(checkpoints, step + 1, student, optimizer, scheduler, config.save_total_limit)
    finally:
        writer.close()
        sampler.close()
        if scorer is not None:
            scorer.close()
    train_seconds = time.perf_counter() - started
    if state.is_main_process:
        t0 = time.perf_counter()
        before = disagreement.recorded_answers(out)
        if before is not None:
            record_disagreement(out, "after", config.max_steps, before, teacher, student, tokenizer, autocast,
                                keep=("before",))
        record_disagreement(out, "after_sample", config.max_steps,
                            greedy_answers(student, tokenizer, probe, config, stop_ids, autocast), teacher, student,
                            tokenizer, autocast, keep=("before", "after"))
        recording_s += time.perf_counter() - t0
        if progress:
            means = {k: v["mean"] for k, v in disagreement.summary(disagreement.read(out)).items()}
            console.print("kd: mean log p_teacher - log p_student on the recorded answers: " + ", ".join(
                f"{phase} {mean:+.4f}" for phase, mean in means.items() if mean is not None)
                + f" ({disagreement.FILE})", highlight=False)

    student.config.use_cache = True
    save_trained(state, out, config.method, student.save_pretrained, tokenizer.eos_token_id, tokenizer=tokenizer)
    done_steps = config.max_steps - start
    median = {k: round(sorted(v)[len(v) // 2], 3) for k, v in timings.items() if v}
    return {
        "config_hash": run.config_hash, "method": config.method, "precision": precision, "loss": config.loss,
        "estimator": config.estimator, "model": shown_model(model_path), "teacher": shown_model(teacher_dir),
        "steps": config.max_steps, "resumed_from_step": start, "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / max(done_steps, 1), 3),
        "tokens_per_s": round((tokens - tokens_before) / max(train_seconds, 1e-9), 2), "tokens": tokens,
        "median_step_phases_s": median, "disagreement_s": round(recording_s, 2), **peak_memory(),
        "rollout": sampler.name, "rollout_reason": rollout.reason, **sampler.timings(), "overlap": config.overlap,
        "stop_token_id": tokenizer.eos_token_id,
    }


def train(config: KDConfig, *, progress: bool = True, console=None) -> TrainResult:
    """On-policy distillation of `config.teacher` into `config.model`, into `config.output_dir`; resumable
    (distill.lifecycle)."""
    from rich.console import Console

    from distill.kd.plot import plot_log

    console = console or Console(stderr=True)
    if config.output_dir is None:
        raise DistillError("kd.output_dir is not set (where the distilled student goes)")
    run = RunFolder(Path(config.output_dir), "kd_config.json", "kd", config_hash(config),
                    checkpoint_marker="state.json")
    if (finished := run.finished()) is not None:
        return finished
    run.resume_point()  # refuse another config's checkpoints first
    # Both tokenizers before any weights: a mismatch stops here, in seconds.
    teacher_dir = teacher_path(config)
    if config.model is None:
        raise DistillError("kd.model is not set: the student (a base model, a merged SFT student or an adapter)")
    check_tokenizers(teacher_dir, resolve_model(config.model))
    state = run.open(config)
    model_path = student_path(config, run.out)
    metrics = run.trained()
    if metrics is None:
        metrics = run.mark_trained(state, _fit(config, run, state, model_path, teacher_dir, progress, console))
    return run.finish(config, state, model_path, metrics, plot_log, "kd.png")


ASSUMED_PROMPT_TOKENS = 256  # prompt length the memory estimate (and `distill plan`) assumes


def step_memory(config: KDConfig, counts, model_config, teacher_counts, teacher_config, *, precision: str,
                world_size: int = 1, prompt_tokens: int = ASSUMED_PROMPT_TOKENS,
                device: str = "gpu", rollout: Rollout | None = None) -> dict[str, Any]:
    """Per-device memory of one step from parameter counts and model configs alone (nothing resolved, no weights;
    `precision` resolved, `device` "gpu" or "cpu", `rollout` who samples, None: nothing beside the trainer): what
    `dry_run` reports and `distill plan` shows for kd.

    A step holds the student's training state and one micro-batch of (prompt + completion) sequences for the
    backward pass (the model's own full-vocabulary logits: no fused head here), the frozen teacher in its dtype, and the
    teacher's completion logits in fp32; sampling from a bf16 copy (`rollout.bf16_copy`), also that copy. A vLLM
    engine is another process: its bf16 weights and KV cache are reported apart (`rollout_engine_gib`)."""
    from distill.sft.memory import GIB, ModelShape

    # One micro-batch's sequences are held for the backward pass, with their logits (the student's and the
    # teacher's); the step's sampled batch is only token ids.
    sequences = config.micro_batch_size or config.prompts_per_step * config.samples_per_prompt
    memory = memory_estimate(config, {"precision": precision, "world_size": world_size}, counts, model_config,
                             max_length=prompt_tokens + config.max_completion_length,
                             per_device_batch_size=sequences, gradient_checkpointing=config.gradient_checkpointing,
                             loss_path="full_logits", device=device)
    teacher_dtype = DTYPES[precision] if config.teacher_dtype == "auto" else DTYPES[config.teacher_dtype]
    vocab = ModelShape.from_config(teacher_config).vocab
    extra = {
        "teacher_weights": teacher_counts.total * teacher_dtype.itemsize,
        "teacher_logits": sequences * config.max_completion_length * vocab * 4,
        "sampling_copy": counts.total * 2 if rollout is not None and rollout.bf16_copy else 0,
    }
    memory["breakdown_gib_one_device"].update({k: round(v / GIB, 3) for k, v in extra.items()})
    memory["per_device_gib"] = {k: round(v + sum(extra.values()) / GIB, 3)
                                for k, v in memory["per_device_gib"].items()}
    if rollout is not None and rollout.backend == "vllm-reload":
        cache = config.vllm.kv_cache_gib if device == "cpu" else None  # on GPUs: gpu_memory_utilization's share
        memory["rollout_engine_gib"] = {"weights": round(counts.total * 2 / GIB, 3), "kv_cache": cache}
    return memory


def dry_run(config: KDConfig, world_size: int = 1, prompt_tokens: int = ASSUMED_PROMPT_TOKENS) -> dict[str, Any]:
    """The resolved config, parameter counts and a per-device memory estimate (`step_memory` on this machine's
    device); loads no weights."""
    from distill.sft.modeling import count_parameters

    if config.model is None:
        raise DistillError("kd.model is not set: the student (a base model, a merged SFT student or an adapter)")
    model_path, teacher_dir = resolve_model(config.model), teacher_path(config)
    report, counts, model_config = dry_run_basics(config, model_path, world_size)
    teacher_counts, teacher_config = count_parameters(teacher_dir, config.model_copy(update={"method": "full"}))
    rollout = choose_rollout(config, report["precision"])
    memory = step_memory(config, counts, model_config, teacher_counts, teacher_config, precision=report["precision"],
                         world_size=world_size, prompt_tokens=prompt_tokens,
                         device="gpu" if torch.cuda.is_available() else "cpu", rollout=rollout)
    return {
        **report, "teacher_path": teacher_dir, "parameters": parameters_report(counts, teacher=teacher_counts.total),
        "rollout": {"backend": rollout.backend, "reason": rollout.reason},
        "step": {"completions": config.prompts_per_step * config.samples_per_prompt,
                 "max_sequence_tokens": prompt_tokens + config.max_completion_length,
                 "assumed_prompt_tokens": prompt_tokens},
        "memory": memory,
    }
