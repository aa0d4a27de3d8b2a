"""`distill sft`: kept traces in, a student out (adapter and/or a merged model vLLM can load).

    data.build_dataset   traces -> token ids + assistant-only labels, over-length policy, held-out problems
    packing.pack         best-fit-decreasing rows; position ids keep examples apart
    modeling.load_model  full / LoRA / QLoRA student in the right dtype
    DistillTrainer       TRL's SFTTrainer, fed our rows and collator, counting real tokens
    distill.kd.offline   with `sft.logit_kd`: the teacher's top-k per trained token, stored once (teacher_topk/),
                         carried through packing as a row number per token; loss alpha x top-k KL + (1-alpha) x CE
    merge                adapter -> merged model, generation config that stops on the trained turn end
    distill.lifecycle    around it, as for rl and kd: resume point, log rewind, staged save, trained.json,
                         merge, metrics.json and result.json

Output folder:
    checkpoints/checkpoint-N/   Trainer checkpoints; a rerun resumes from the newest complete one
                                (none under FSDP on CPU ranks: distill.sft.strategy)
    log.jsonl, training.png     loss / grad_norm / learning_rate / eval_loss per step (kd_kl, kd_ce with
                                logit_kd), and their plot
    teacher_topk/               logit_kd: the teacher's stored top-k, reused while train file, teacher and k hold
    adapter/ (LoRA, QLoRA)      merged/ (LoRA, QLoRA with merge=true)      model/ (full fine-tune)
    sft_config.json (what the checkpoints belong to), trained.json (training + save finished),
    metrics.json, data_report.json, result.json (written last: the run is complete)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback
from trl import SFTConfig as TRLConfig
from trl import SFTTrainer

from distill.chat_templates import template_token_ids
from distill.config import PromptConfig, SFTConfig, config_hash
from distill.errors import DistillError
from distill.files import file_digest
from distill.kd.losses import kd_terms
from distill.kd.offline import TopKStore, check_teacher, ensure_store
from distill.lifecycle import (
    RunFolder,
    TrainResult,
    checkpoint_step,
    determinism_state,
    dry_run_basics,
    memory_estimate,
    parameters_report,
    peak_memory,
    refuse_data_parallel_here,
    restore_determinism,
    rewound_log,
    save_trained,
)
from distill.models import resolve_model, shown_model
from distill.sft.callbacks import JsonlLogCallback, RichProgressCallback, plot_log
from distill.sft.check import check, first_trace, refuse
from distill.sft.data import build_dataset, check_train_file, default_num_proc, load_tokenizer
from distill.sft.loss import loss_path, tiled_head
from distill.sft.modeling import (
    DTYPES,
    attention_implementation,
    checkpoint_bytes,
    fit_embeddings,
    load_model,
    lora_config,
    resolve_precision,
)
from distill.sft.packing import check_packing, collator_for, pack, row_length
from distill.sft.strategy import (
    SHARDED,
    PackingCheckAtStart,
    check_strategy,
    model_loading,
    requested_strategy,
    shards_at_load,
)

IGNORE = -100


@dataclass
class TokenCounter:
    """Tokens this run trained on, summed over ranks at each log: real (non-pad), padded, supervised."""

    real: int = 0
    padded: int = 0
    supervised: int = 0
    _pending: list[int] = field(default_factory=lambda: [0, 0, 0])

    def add(self, real: int, padded: int, supervised: int) -> None:
        self._pending[0] += real
        self._pending[1] += padded
        self._pending[2] += supervised

    def sync(self, accelerator) -> None:
        pending = torch.tensor(self._pending, dtype=torch.long, device=accelerator.device)
        if accelerator.num_processes > 1:
            pending = accelerator.reduce(pending, reduction="sum")
        real, padded, supervised = (int(x) for x in pending.tolist())
        self.real += real
        self.padded += padded
        self.supervised += supervised
        self._pending = [0, 0, 0]


@dataclass
class KDTermLog:
    """The two terms of the logit-KD loss, summed over the micro-batches since the last log and reported as token
    means (log.jsonl's kd_kl and kd_ce); kept on the device until a log, so a step never waits on it."""

    sums: torch.Tensor | None = None  # [KL sum, CE sum, tokens]

    def add(self, kl: torch.Tensor, nll: torch.Tensor) -> None:
        terms = torch.stack([kl.detach().sum(), nll.detach().sum(), torch.tensor(float(kl.numel()), device=kl.device)])
        self.sums = terms if self.sums is None else self.sums + terms

    def pop(self, accelerator) -> dict[str, float]:
        # Every rank logs and reduces, whether or not it had tokens, so the collective lines up.
        sums = self.sums if self.sums is not None else torch.zeros(3, device=accelerator.device)
        if accelerator.num_processes > 1:
            sums = accelerator.reduce(sums, reduction="sum")
        self.sums = None
        kl, nll, tokens = (float(x) for x in sums.tolist())
        return {"kd_kl": kl / tokens, "kd_ce": nll / tokens} if tokens else {}


class DistillTrainer(SFTTrainer):
    """SFTTrainer on pre-tokenized, pre-packed rows; counts the real tokens each micro-batch carries.

    The loss path is chosen once in `distill.sft.loss` (and recorded as metrics.loss_path): on GPUs
    TRL's fused LM head (log-probs in tiles, never the full logits: the memory that matters at 32k tokens
    x 150k vocabulary), with or without Liger's layer kernels; without Triton that head is a Python loop,
    measured 1.4-2x slower a step here, so on CPUs the model's own cross-entropy runs (transformers'
    `Trainer.compute_loss`, the same token-weighted mean over the accumulated batch).
    """

    def __init__(self, *args, token_counter: TokenCounter, fused_loss: bool, kd_alpha: float | None = None, **kwargs):
        self.tokens = token_counter
        self.fused_loss = fused_loss
        self.kd_alpha = kd_alpha  # offline logit KD's mix; None: plain SFT
        self.kd_terms = KDTermLog()
        super().__init__(*args, **kwargs)
        if kd_alpha is not None:
            self.loss_is_scaled_for_ga = True  # _logit_kd_loss normalises over the accumulated batch itself

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Counted by the collator on the CPU: reading them off the device would sync the host every micro-batch.
        real = inputs.pop("num_real_tokens", None)
        padded = inputs.pop("num_padded_tokens", None)
        supervised = inputs.pop("num_supervised_tokens", None)
        if model.training and real is not None:
            if supervised is None:  # a collator of another kind: count on the device (one sync)
                supervised = (inputs["labels"][:, 1:] != IGNORE).sum()
            self.tokens.add(int(real), int(padded), int(supervised))
        teacher = inputs.pop("teacher_topk_ids", None), inputs.pop("teacher_topk_logprobs", None)
        if self.kd_alpha is not None and model.training and teacher[0] is not None:
            return self._logit_kd_loss(model, inputs, *teacher, num_items_in_batch)
        # Evaluation stays the plain cross-entropy: eval_loss compares with a run without logit_kd.
        if self.fused_loss:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs["use_cache"] = False  # with a cache, transformers stops separating packed examples
        return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _logit_kd_loss(self, model, inputs, top_ids: torch.Tensor, top_logprobs: torch.Tensor,
                       num_items_in_batch) -> torch.Tensor:
        """alpha x top-k forward KL + (1 - alpha) x CE on the supervised positions (the collator's teacher rows are
        in the order `logits[:, :-1][mask]` reads them), normalised as the model's own loss is: summed, over the
        supervised tokens of the whole accumulated batch (num_items_in_batch, already summed over ranks)."""
        labels = inputs.pop("labels")
        logits = model(**inputs, use_cache=False).logits[:, :-1]
        targets = labels[:, 1:] != IGNORE
        kl, nll = kd_terms(logits[targets], labels[:, 1:][targets], top_ids, top_logprobs)
        self.kd_terms.add(kl, nll)
        total = self.kd_alpha * kl.sum() + (1 - self.kd_alpha) * nll.sum()
        if num_items_in_batch is None:
            return total / max(kl.numel(), 1) / self.current_gradient_accumulation_steps
        # As transformers' Trainer.compute_loss: the divisor counts every rank's tokens, DDP averages gradients.
        scale = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        return total / num_items_in_batch * scale

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self.tokens.sync(self.accelerator)  # every rank logs, so the reduce lines up
        if self.kd_alpha is not None:
            terms = self.kd_terms.pop(self.accelerator)
            if "loss" in logs:
                logs = {**logs, **terms}
        super().log(logs, start_time)


def _trainer_args(config: SFTConfig, precision: str, checkpoints: Path, has_eval: bool,
                  sharded_at_load: bool = False) -> TRLConfig:
    """TRL's config from ours. `sharded_at_load` (FSDP on CPU ranks): no intermediate checkpoints, which
    transformers cannot write for a model sharded at load; a crashed run of that kind starts over."""
    typed = {
        "output_dir": str(checkpoints),
        "num_train_epochs": config.epochs, "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_batch_size,
        "per_device_eval_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate, "lr_scheduler_type": config.lr_scheduler,
        "lr_scheduler_kwargs": config.lr_scheduler_kwargs, "optim": config.optim,
        "warmup_steps": config.warmup_ratio,  # under 1 (validated): transformers reads it as a ratio
        "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm,
        "gradient_checkpointing": config.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "bf16": precision == "bf16", "fp16": precision == "fp16",
        "logging_steps": config.logging_steps,
        "save_strategy": "no" if sharded_at_load else "steps", "save_steps": config.save_steps, "save_total_limit": config.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no", "eval_steps": config.eval_steps or config.save_steps,
        "seed": config.seed, "data_seed": config.seed, "full_determinism": config.deterministic,
        "report_to": "none", "disable_tqdm": True, "log_level": "warning",
        # Rows arrive tokenized, labelled and packed; TRL must not re-tokenize, re-pack or drop columns.
        "dataset_kwargs": {"skip_prepare_dataset": True}, "remove_unused_columns": False,
        "packing": False, "padding_free": False, "max_length": config.max_length,
        "dataloader_num_workers": 0, "ddp_find_unused_parameters": False,
        "use_cpu": not torch.cuda.is_available(),
    }
    # sft.trainer_args carries every other TRL field; one set here already has its own typed key (or is how
    # distill feeds the trainer), and two places for one setting would disagree.
    clash = sorted(set(config.trainer_args) & set(typed))
    if clash:
        raise DistillError(f"sft.trainer_args sets {clash}, which distill sets itself; use the typed sft fields "
                           "(`distill recipes schema`) instead")
    return TRLConfig(**typed, **config.trainer_args)


def packed_data(config: SFTConfig, model_path: str, attention: str, num_proc: int | None,
                teacher: TopKStore | None = None):
    """The kept traces tokenized (cached under output_dir/cache), then packed: (data, row length, train rows,
    eval rows or None). With the teacher's top-k store, every row carries its tokens' store rows."""
    template = (config.chat_template, tuple(config.chat_template_tokens))
    data = build_dataset(Path(config.train_file), model_path, config.max_length, config.overlong,
                         config.eval_fraction, config.seed, Path(config.output_dir) / "cache", num_proc, *template,
                         teacher_records=teacher.records if teacher is not None else None)
    rows_of = row_length(config.max_length, data.report["longest_kept"], attention)
    train_rows = pack(data.train, rows_of, config.packing, num_proc)
    eval_rows = pack(data.eval, rows_of, config.packing, num_proc) if data.eval is not None else None
    return data, rows_of, train_rows, eval_rows


def epoch_tokens(config: SFTConfig) -> tuple[int, int]:
    """(rows, real tokens) one epoch trains on, exactly as `train` packs them; loads no weights. What a
    token budget turns into steps."""
    attention = config.attn_implementation or attention_implementation()
    _, _, rows, _ = packed_data(config, resolve_model(config.model), attention, default_num_proc())
    return len(rows), int(sum(sum(lengths) for lengths in rows["seq_lengths"]))


def _fit(config: SFTConfig, run: RunFolder, state, model_path: str, precision: str, progress: bool,
         callbacks: list[TrainerCallback], teacher: TopKStore | None = None) -> dict[str, Any]:
    """Tokenize, pack, train (resuming), evaluate and save the model or adapter; returns the run's metrics.
    `teacher`: the teacher's top-k store under offline logit KD."""
    out = run.out
    last = run.resume_point()
    template = (config.chat_template, tuple(config.chat_template_tokens))
    tokenizer = load_tokenizer(model_path, *template)
    deterministic_before = determinism_state()
    num_proc = default_num_proc()
    attention = config.attn_implementation or attention_implementation()
    # Rank 0 tokenizes and packs into the Arrow cache; the other ranks then read the same cache.
    with state.main_process_first():
        data, rows_of, train_rows, eval_rows = packed_data(config, model_path, attention, num_proc, teacher)

    resumed_row = rewound_log(state, run.log_path, last)
    tokens = TokenCounter()
    if resumed_row:
        tokens.real = int(resumed_row.get("tokens", 0))
        tokens.supervised = int(resumed_row.get("loss_tokens", 0))

    hooks: list[TrainerCallback] = [JsonlLogCallback(run.log_path, tokens, resumed_row)]
    if progress:
        hooks.append(RichProgressCallback(tokens))
    # Sharded strategies: the model runs a forward pass only once wrapped, so the check waits for step 0.
    collator = collator_for(tokenizer.pad_token_id, attention, teacher)
    late_check = PackingCheckAtStart(collator) if config.packing and requested_strategy() in SHARDED else None
    # The arguments before the model: under ZeRO-3 they register the DeepSpeed config that makes
    # from_pretrained load each rank's partition (zero3_init_flag) instead of the whole student.
    sharded_at_load = shards_at_load(config.method)
    args = _trainer_args(config, precision, out / "checkpoints", eval_rows is not None, sharded_at_load)
    loss = loss_path(config.liger, logit_kd=teacher is not None)
    args.use_liger_kernel = loss == "liger"
    model = load_model(model_path, config, precision, attention,
                       fsdp_size=state.num_processes if sharded_at_load else 1)
    loading = model_loading(model)
    # Rows for tokens the recipe's chat template added, and its turn tokens' rows: trained beside LoRA's adapters.
    new_tokens = sorted({*fit_embeddings(model, len(tokenizer)), *template_token_ids(tokenizer, *template)})
    trainer = DistillTrainer(
        model=model, args=args,
        train_dataset=train_rows, eval_dataset=eval_rows, processing_class=tokenizer,
        data_collator=collator,
        peft_config=lora_config(config, new_tokens) if config.method != "full" else None,
        callbacks=hooks + callbacks + ([late_check] if late_check else []), token_counter=tokens,
        fused_loss=tiled_head(loss), kd_alpha=config.logit_kd.alpha if teacher is not None else None,
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; log.jsonl and the progress bar have them
    strategy = check_strategy(trainer.accelerator, trainer.model)
    packing_check = check_packing(trainer.model, collator) if config.packing and late_check is None else None

    tokens_before, started = tokens.real, time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
    finally:  # full_determinism switches torch and the environment process-wide; give the caller theirs back
        restore_determinism(deterministic_before)
    train_seconds = time.perf_counter() - started
    packing_check = late_check.result if late_check is not None else packing_check
    final_eval = trainer.evaluate() if eval_rows is not None else {}

    trainer.accelerator.unwrap_model(trainer.model).config.use_cache = True
    # CPU runs keep exact fp32 weights (the strategies are compared to 1e-5).
    save_trained(state, out, config.method, lambda folder: trainer.save_model(str(folder)), data.stop_id,
                 cast_to=precision if torch.cuda.is_available() else None)
    padded = max(tokens.padded, 1)
    return {
        "config_hash": config_hash(config), "method": config.method, "precision": precision, "model": shown_model(model_path),
        "steps": output.global_step, "resumed_from_step": checkpoint_step(last),
        "train_loss": output.training_loss, "eval_loss": final_eval.get("eval_loss"),
        "train_seconds": round(train_seconds, 2), "tokens": tokens.real, "loss_tokens": tokens.supervised,
        "tokens_per_s": round((tokens.real - tokens_before) / max(train_seconds, 1e-9), 2),
        "padding_fraction": round(1 - tokens.real / padded, 4) if tokens.padded else None,
        "packing": config.packing, "packing_check": packing_check, "row_length": rows_of if config.packing else None,
        "attn_implementation": attention, "deterministic": config.deterministic, "seed": config.seed,
        "strategy": strategy, "model_loading": loading, "loss_path": loss,
        "train_rows": len(train_rows), "eval_rows": len(eval_rows) if eval_rows is not None else 0,
        "stop_token_id": data.stop_id, **peak_memory(), "world_size": state.num_processes, "data": data.report,
    }


def _teacher_store(config: SFTConfig, state, model_path: str, precision: str) -> tuple[TopKStore | None, dict]:
    """Offline logit KD's store, made before the student loads (the teacher and the student are never in memory
    together); (None, {}) for plain SFT. The tokenizer check runs first, before any weights load. Rank 0 scores,
    the other ranks then find the same store and reuse it."""
    if config.logit_kd is None:
        return None, {}
    teacher_path = check_teacher(config, model_path)
    dtype = DTYPES[precision if config.logit_kd.teacher_dtype == "auto" else config.logit_kd.teacher_dtype]
    with state.main_process_first():
        return ensure_store(config, teacher_path, model_path, dtype)


def train(config: SFTConfig, *, progress: bool = True, callbacks: list[TrainerCallback] | None = None,
          eval_prompts: PromptConfig | None = None) -> TrainResult:
    """Fine-tune `config.model` on `config.train_file` into `config.output_dir`.

    Crash-safe at every phase (distill.lifecycle): training resumes from the newest complete checkpoint, a
    finished training phase (trained.json) is not redone when only the merge was interrupted, and a finished
    run (result.json, same config hash and train file) returns its recorded result. Under `accelerate launch`
    every rank trains and only rank 0 writes. `callbacks` are extra transformers TrainerCallbacks.
    """
    if config.train_file is None:
        raise DistillError("sft.train_file is not set (the kept traces, e.g. RUN_DIR/filter/kept.jsonl)")
    if config.output_dir is None:
        raise DistillError("sft.output_dir is not set (where the student goes)")
    check_train_file(config.train_file)  # every row a trace, at least one: named errors before any weights load
    # train_file is not part of the config hash (its path moves with the run dir); its content is.
    run = RunFolder(Path(config.output_dir), "sft_config.json", "SFT", config_hash(config),
                    inputs={"train_file_digest": file_digest(Path(config.train_file))})
    if (finished := run.finished()) is not None:
        return finished
    refuse_data_parallel_here()
    state = run.open(config)

    model_path = resolve_model(config.model)
    metrics = run.trained()
    if metrics is None:
        refuse(check(config, first_trace(Path(config.train_file)), eval_prompts, model_path))
        precision = resolve_precision(config.precision)
        teacher, figures = _teacher_store(config, state, model_path, precision)
        fitted = _fit(config, run, state, model_path, precision, progress, list(callbacks or []), teacher)
        metrics = run.mark_trained(state, {**fitted, **({"logit_kd": figures} if teacher is not None else {})})
    return run.finish(config, state, model_path, metrics, plot_log, "training.png",
                      reports={"data_report.json": metrics["data"]})


def dry_run(config: SFTConfig, world_size: int = 1) -> dict[str, Any]:
    """The resolved config, its data checked and counted, parameter counts and a per-device memory estimate;
    loads no weights."""
    if world_size < 1:
        raise DistillError(f"world_size {world_size}: expected 1 or more devices")
    # Bad data is the cheap error: checked before the model is looked at. Without a train file (a memory
    # estimate before the data exists) there is nothing to check.
    records = check_train_file(config.train_file) if config.train_file is not None else None
    model_path = resolve_model(config.model)
    report, counts, model_config = dry_run_basics(config, model_path, world_size)
    memory = memory_estimate(config, report, counts, model_config, max_length=config.max_length,
                             per_device_batch_size=config.per_device_batch_size,
                             gradient_checkpointing=config.gradient_checkpointing, optim=config.optim,
                             loss_path=loss_path(config.liger, logit_kd=config.logit_kd is not None), device="gpu" if torch.cuda.is_available() else "cpu",
                             checkpoint_bytes=checkpoint_bytes(model_path, model_config, counts.total))
    sequences = config.per_device_batch_size * config.gradient_accumulation_steps * world_size
    return {
        **report,
        "parameters": parameters_report(counts, nf4_quantized=counts.quantizable if config.method == "qlora" else 0),
        "global_batch": {"rows": sequences, "max_tokens": sequences * config.max_length,
                         "packing": config.packing},
        "memory": memory,
        "train_file": {"path": config.train_file and str(config.train_file), "records": records},
    }
