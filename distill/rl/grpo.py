"""`distill rl`: GRPO on rule-based rewards, on TRL's GRPOTrainer.

    data.read_problems / build_prompts   Problem JSONL -> the generation stage's prompts (or R1-Zero's template)
    pass_rate_filter.filter_problems     optional pass-rate pre-pass (open-r1's 0.1-0.9 band)
    rollout.choose_rollout               colocated vLLM on GPUs; on CPUs vLLM reloading the weights each step
                                         (rollout.vllm_engine) or transformers (rollout.transformers_copy); printed
    rewards.RewardScorer                 every reward of a step in the filter's time-bounded process pool
    sft.modeling.load_model              full / LoRA / QLoRA policy, as in `sft`
    logging.RLLogCallback / plot_log     per-step JSONL and its PNG

Output folder (like `sft`'s; distill.lifecycle resumes, saves and finishes it):
    checkpoints/checkpoint-N/   a rerun of the same command resumes from the newest complete one
    log.jsonl, rewards.png      one row per step: reward (total, per function), accuracy, KL, length, ...
    adapter/ + merged/ (LoRA, QLoRA)  or  model/ (full)      the merged folder is what vLLM loads
    rl_config.json, trained.json, metrics.json, pass_rate_filter.json, result.json (written last)
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from distill.config import RLConfig, config_hash
from distill.errors import DistillError
from distill.hooks import grpo_trainer_with_rollout
from distill.lifecycle import (
    RunFolder,
    TrainResult,
    checkpoint_step,
    dry_run_basics,
    memory_estimate,
    parameters_report,
    refuse_data_parallel_here,
    rewound_log,
    save_trained,
)
from distill.models import resolve_model
from distill.rl.data import PromptSet, build_prompts, read_problems, to_completions
from distill.rl.logging import RLLogCallback, plot_log
from distill.rl.rewards import RewardScorer, RewardSettings, resolve_custom
from distill.rollout import choose_rollout
from distill.sft.merge import starting_model
from distill.sft.modeling import DTYPES, load_model, lora_config, resolve_precision


class RewardColumns:
    """One callable per reward for TRL, all answered from a single pool pass over the step's completions."""

    def __init__(self, config: RLConfig, prompts: PromptSet, scorer: RewardScorer):
        self.config, self.prompts, self.scorer = config, prompts, scorer
        self._key: tuple | None = None
        self._scores: dict[str, list[float]] = {}

    def functions(self) -> list:
        def column(name: str):
            def fn(prompts, completions, completion_ids, problem_id, user, **_):
                return self._score(completions, completion_ids, problem_id, user)[name]

            fn.__name__ = name  # TRL logs rewards/<name>/mean
            return fn

        return [column(r.name) for r in self.config.rewards]

    def _score(self, texts, completion_ids, problem_ids, users) -> dict[str, list[float]]:
        key = (tuple(problem_ids), tuple(texts))
        if key != self._key:
            completions = to_completions(self.prompts, problem_ids, users, texts,
                                         [len(ids) for ids in completion_ids], self.config.max_completion_length)
            self._scores = self.scorer.score(completions, self.config.num_generations)
            self._key = key
        return self._scores


def policy_path(config: RLConfig, out: Path) -> str:
    """The model to start from: a folder or hub id as is; an adapter folder merged into its base first."""
    if config.model is None:
        raise DistillError("rl.model is not set: a base model, a merged SFT student, or an adapter folder")
    return starting_model(config.model, out / "initial_policy")


def colocated_max_model_len(config: RLConfig, longest_prompt: int | None) -> int | None:
    """The colocated engine's context: the longest prompt plus the completion budget, rounded up to 256.

    Unset, vLLM takes the model's own window (131k tokens for Llama 3.1) and sizes its KV cache and its
    CUDA-graph capture for it inside the 0.3 of the GPU it is given; a rollout never needs more than this."""
    if config.vllm.max_model_len is not None or longest_prompt is None:
        return config.vllm.max_model_len
    return -(-(longest_prompt + config.max_completion_length) // 256) * 256


def grpo_args(config: RLConfig, precision: str, checkpoints: Path, use_vllm: bool,
              longest_prompt: int | None = None):
    from trl import GRPOConfig

    completions = config.prompts_per_step * config.num_generations
    return GRPOConfig(
        output_dir=str(checkpoints), max_steps=config.max_steps,
        per_device_train_batch_size=completions // config.gradient_accumulation_steps,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_generations=config.num_generations, max_completion_length=config.max_completion_length,
        temperature=config.temperature, top_p=config.top_p,
        beta=config.beta, epsilon=config.epsilon, epsilon_high=config.epsilon_high, loss_type=config.loss_type,
        scale_rewards=config.scale_rewards, num_iterations=config.num_iterations,
        mask_truncated_completions=config.mask_truncated_completions,
        reward_weights=[r.weight for r in config.rewards],
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # under 1 (validated): transformers reads it as a ratio
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        optim=config.optim, bf16=precision == "bf16", fp16=precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        # Training loads the policy with use_cache off (sft.modeling); generation needs the KV cache.
        generation_kwargs={"use_cache": True},
        use_vllm=use_vllm, vllm_mode="colocate", vllm_gpu_memory_utilization=config.vllm.gpu_memory_utilization,
        vllm_max_model_length=colocated_max_model_len(config, longest_prompt),
        vllm_tensor_parallel_size=config.vllm.tensor_parallel_size,
        logging_steps=config.logging_steps, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, seed=config.seed, data_seed=config.seed,
        report_to="none", disable_tqdm=True, log_level="warning", log_completions=False,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
    )


def _fit(config: RLConfig, run: RunFolder, state, model_path: str, progress: bool, console) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback

    from distill.rl.pass_rate_filter import filter_problems
    from distill.rollout.transformers_copy import RolloutCopy

    out = run.out
    last = run.resume_point()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    problems = read_problems(config.problems)
    prompts = build_prompts(problems, tokenizer, config)
    pass_rates = None
    if config.pass_rate_filter.enabled:
        prompts, pass_rates = filter_problems(config, model_path, prompts, out, console)
    precision = resolve_precision(config.precision)
    rollout = choose_rollout(config, precision)
    console.print(f"rl: rollouts by [bold]{rollout.backend}[/] ({rollout.reason}); {config.method}, {precision}, "
                  f"{len(prompts.rows)} problems, {config.prompts_per_step} x {config.num_generations} "
                  f"completions a step", highlight=False)

    resumed_row = rewound_log(state, run.log_path, last)
    names = [r.name for r in config.rewards]
    settings = RewardSettings(math_timeout_s=config.math_timeout_s, sandbox=config.sandbox,
                        answer_tag=config.template == "r1-zero", max_completion_length=config.max_completion_length,
                        overlong_buffer=config.overlong_buffer, custom=resolve_custom(names))
    with RewardScorer(names, settings, config.reward_workers) as scorer, ExitStack() as engines:
        vllm_rollout = None
        if rollout.backend == "vllm-reload":
            from distill.rollout.vllm_engine import VLLMRollout

            vllm_rollout = VLLMRollout(model_path, config)
            engines.callback(vllm_rollout.close)
        trainer = grpo_trainer_with_rollout()(
            model=load_model(model_path, config, precision),
            rollout_copy=RolloutCopy(model_path, DTYPES[precision], "cuda" if torch.cuda.is_available() else None)
            if rollout.bf16_copy else None, vllm_rollout=vllm_rollout,
            reward_funcs=RewardColumns(config, prompts, scorer).functions(),
            args=grpo_args(config, precision, out / "checkpoints", rollout.use_vllm,
                           max((len(tokenizer(r["prompt"], add_special_tokens=False).input_ids) for r in prompts.rows),
                               default=None) if rollout.use_vllm else None),
            train_dataset=Dataset.from_list(prompts.rows), processing_class=tokenizer,
            peft_config=lora_config(config) if config.method != "full" else None,
            callbacks=[RLLogCallback(run.log_path, resumed_row, console if progress else None)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; RLLogCallback prints one line a step
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
        train_seconds = time.perf_counter() - started
        evaluations = scorer.evaluations
        rollout_timings = vllm_rollout.timings() if vllm_rollout is not None else {}

    trainer.accelerator.unwrap_model(trainer.model).config.use_cache = True
    save_trained(state, out, config.method, lambda folder: trainer.save_model(str(folder)),
                 tokenizer.eos_token_id, tokenizer=tokenizer)
    resumed_from = checkpoint_step(last)
    return {
        "config_hash": config_hash(config), "method": config.method, "precision": precision, "model": model_path,
        "rollout": rollout.backend, "rollout_reason": rollout.reason, "steps": output.global_step,
        "resumed_from_step": resumed_from, "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / max(output.global_step - resumed_from, 1), 3),
        "reward_evaluations": evaluations, "problems": len(prompts.rows), "pass_rate_filter": pass_rates, **rollout_timings,
        "stop_token_id": tokenizer.eos_token_id,
    }


def train(config: RLConfig, *, progress: bool = True, console=None) -> TrainResult:
    """GRPO on `config.problems` from `config.model` into `config.output_dir`; resumable like `sft.train`
    (distill.lifecycle)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    if config.output_dir is None:
        raise DistillError("rl.output_dir is not set (where the policy goes)")
    run = RunFolder(Path(config.output_dir), "rl_config.json", "RL", config_hash(config))
    if (finished := run.finished()) is not None:
        return finished
    refuse_data_parallel_here()  # before any weight loads
    state = run.open(config)
    model_path = policy_path(config, run.out)
    metrics = run.trained()
    if metrics is None:
        metrics = run.mark_trained(state, _fit(config, run, state, model_path, progress, console))
    return run.finish(config, state, model_path, metrics, plot_log, "rewards.png")


def dry_run(config: RLConfig, world_size: int = 1, prompt_tokens: int = 256) -> dict[str, Any]:
    """The resolved config, parameter counts and a per-device memory estimate; loads no weights.

    A GRPO step holds one micro-batch of (prompt + completion) sequences for the backward pass, and with
    beta > 0 a full fine-tune also keeps a frozen reference copy (LoRA uses the base with adapters off)."""
    model_path = resolve_model(config.model) if config.model else None
    if model_path is None:
        raise DistillError("rl.model is not set: a base model, a merged SFT student, or an adapter folder")
    report, counts, model_config = dry_run_basics(config, model_path, world_size)
    precision = report["precision"]
    micro_batch = config.prompts_per_step * config.num_generations // config.gradient_accumulation_steps
    sequence = prompt_tokens + config.max_completion_length
    memory = memory_estimate(config, report, counts, model_config, max_length=sequence,
                             per_device_batch_size=micro_batch, gradient_checkpointing=config.gradient_checkpointing,
                             optim=config.optim)
    if config.beta > 0 and config.method == "full":
        reference = counts.total * (2 if precision in ("bf16", "fp16") else 4) / 1024 ** 3
        memory["breakdown_gib_one_device"]["reference_model"] = round(reference, 3)
        memory["per_device_gib"] = {k: round(v + reference, 3) for k, v in memory["per_device_gib"].items()}
    return {
        **report, "rollout": asdict(choose_rollout(config, precision)), "parameters": parameters_report(counts),
        "step": {"completions": config.prompts_per_step * config.num_generations, "micro_batch": micro_batch,
                 "max_sequence_tokens": sequence, "assumed_prompt_tokens": prompt_tokens},
        "memory": memory,
    }
