"""`distill sft`: kept traces in, a student out (adapter and/or a merged model vLLM can load).

    data.build_dataset   traces -> token ids + assistant-only labels, over-length policy, held-out problems
    packing.pack         best-fit-decreasing rows; position ids keep examples apart
    modeling.load_model  full / LoRA / QLoRA student in the right dtype
    DistillTrainer       TRL's SFTTrainer, fed our rows and collator, counting real tokens
    merge                adapter -> merged model, generation config that stops on the trained turn end

Output folder:
    checkpoints/checkpoint-N/   Trainer checkpoints; a rerun resumes from the newest complete one
                                (none under FSDP on CPU ranks: distill.sft.strategy)
    log.jsonl, training.png     loss / grad_norm / learning_rate / eval_loss per step, and their plot
    adapter/ (LoRA, QLoRA)      merged/ (LoRA, QLoRA with merge=true)      model/ (full fine-tune)
    sft_config.json (what the checkpoints belong to), trained.json (training + save finished),
    metrics.json, data_report.json, result.json (written last: the run is complete)
"""
from __future__ import annotations

import gc
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback
from trl import SFTConfig as TRLConfig
from trl import SFTTrainer

from distill.chat_templates import template_token_ids
from distill.config import PromptConfig, SFTConfig, config_hash
from distill.errors import DistillError
from distill.files import atomic_write_json, file_digest, publish_dir, read_json
from distill.models import resolve_model, shown_model
from distill.sft.callbacks import JsonlLogCallback, RichProgressCallback, plot_log, rewind_log
from distill.sft.check import check, first_trace, refuse
from distill.sft.data import build_dataset, check_train_file, default_num_proc, load_tokenizer
from distill.sft.loss import loss_path, tiled_head
from distill.sft.memory import ModelShape, estimate
from distill.sft.merge import ensure_stop_token, finished_folders, save_in_precision
from distill.sft.modeling import (
    attention_implementation,
    checkpoint_bytes,
    count_parameters,
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
class TrainResult:
    output_dir: Path
    adapter_dir: Path | None
    merged_dir: Path | None
    metrics: dict[str, Any]
    log_path: Path
    plot_path: Path

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainResult:
        paths = ("output_dir", "adapter_dir", "merged_dir", "log_path", "plot_path")
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()
                      if k in cls.__dataclass_fields__})


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


class DistillTrainer(SFTTrainer):
    """SFTTrainer on pre-tokenized, pre-packed rows; counts the real tokens each micro-batch carries.

    The loss path is chosen once in `distill.sft.loss` (and recorded as metrics.loss_path): on GPUs
    TRL's fused LM head (log-probs in tiles, never the full logits: the memory that matters at 32k tokens
    x 150k vocabulary), with or without Liger's layer kernels; without Triton that head is a Python loop,
    measured 1.4-2x slower a step here, so on CPUs the model's own cross-entropy runs (transformers'
    `Trainer.compute_loss`, the same token-weighted mean over the accumulated batch).
    """

    def __init__(self, *args, token_counter: TokenCounter, fused_loss: bool, **kwargs):
        self.tokens = token_counter
        self.fused_loss = fused_loss
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Counted by the collator on the CPU: reading them off the device would sync the host every micro-batch.
        real = inputs.pop("num_real_tokens", None)
        padded = inputs.pop("num_padded_tokens", None)
        supervised = inputs.pop("num_supervised_tokens", None)
        if model.training and real is not None:
            if supervised is None:  # a collator of another kind: count on the device (one sync)
                supervised = (inputs["labels"][:, 1:] != IGNORE).sum()
            self.tokens.add(int(real), int(padded), int(supervised))
        if self.fused_loss:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs["use_cache"] = False  # with a cache, transformers stops separating packed examples
        return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self.tokens.sync(self.accelerator)  # every rank logs, so the reduce lines up
        super().log(logs, start_time)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N holding trainer_state.json (written last, so the checkpoint is whole)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _trainer_args(config: SFTConfig, precision: str, checkpoints: Path, has_eval: bool,
                  sharded_at_load: bool = False) -> TRLConfig:
    """TRL's config from ours. `sharded_at_load` (FSDP on CPU ranks): no intermediate checkpoints, which
    transformers cannot write for a model sharded at load; a crashed run of that kind starts over."""
    warmup = config.warmup_ratio if config.warmup_ratio < 1 else int(config.warmup_ratio)
    typed = {
        "output_dir": str(checkpoints),
        "num_train_epochs": config.epochs, "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_batch_size,
        "per_device_eval_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate, "lr_scheduler_type": config.lr_scheduler,
        "lr_scheduler_kwargs": config.lr_scheduler_kwargs, "optim": config.optim, "warmup_steps": warmup,
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


# What transformers' `enable_full_determinism` writes into the process environment. CUDA_LAUNCH_BLOCKING=1 left
# behind would make every later kernel launch in this process synchronous, eval's vLLM engine included (its
# workers inherit the environment), so it is put back as it was once training ends.
DETERMINISM_ENV = ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "ASCEND_LAUNCH_BLOCKING",
                   "HCCL_DETERMINISTIC", "FLASH_ATTENTION_DETERMINISTIC")


def determinism_state() -> dict[str, Any]:
    return {"algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
            "env": {name: os.environ.get(name) for name in DETERMINISM_ENV}}


def restore_determinism(state: dict[str, Any]) -> None:
    torch.use_deterministic_algorithms(state["algorithms"])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state["cudnn"]
    for name, value in state["env"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def refuse_data_parallel(visible_gpus: int, world_size: int) -> None:
    """Several GPUs visible to one process without a launcher: refuse before any weight is read.

    transformers' Trainer would wrap the student in nn.DataParallel, which TRL refuses, but only after the
    model has loaded (minutes for a 70B QLoRA student)."""
    if visible_gpus > 1 and world_size == 1:
        raise DistillError(
            f"{visible_gpus} GPUs are visible to this one process, and distill trains on one GPU per process: "
            "on one process transformers would fall back to nn.DataParallel, which TRL refuses after the "
            "student has loaded. Either train on one GPU (CUDA_VISIBLE_DEVICES=0 distill sft ...; what a LoRA or "
            "QLoRA student that fits one card needs), or use them all with one process each: `accelerate "
            "launch --config_file recipes/accelerate/ddp.yaml --num_processes "
            f"{visible_gpus} -m distill.sft ...` (zero3.yaml or fsdp.yaml for a student that does not fit one card).")


def free_device_memory() -> None:
    """Return what a finished stage's tensors held to the device, for the next stage's engine."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is KiB on Linux


def _resume_point(out: Path, digest: str) -> Path | None:
    """The checkpoint to resume from, refusing checkpoints another config left behind."""
    last = last_complete_checkpoint(out / "checkpoints")
    stamp = out / "sft_config.json"
    if last is not None and stamp.exists() and read_json(stamp).get("config_hash") != digest:
        raise DistillError(f"{out} holds checkpoints of a different SFT config; use another output_dir "
                           f"or delete {out / 'checkpoints'} to start over")
    return last


def _same_run(metrics: dict[str, Any], digest: str, data_digest: str) -> bool:
    return metrics.get("config_hash") == digest and metrics.get("train_file_digest") == data_digest


def _drop_stale_checkpoints(out: Path, data_digest: str) -> None:
    """Checkpoints trained on another version of the training file are not resumed: start over."""
    stamp = out / "sft_config.json"
    if stamp.exists() and read_json(stamp).get("train_file_digest") != data_digest:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        for name in ("trained.json", "result.json", "log.jsonl"):
            (out / name).unlink(missing_ok=True)


def _rewound_log(state, log_path: Path, last: Path | None) -> dict[str, Any] | None:
    """The log row a resumed run continues from (rank 0 drops rows past the checkpoint)."""
    if last is None:
        if state.is_main_process and log_path.exists():
            log_path.unlink()  # a fresh start: the old log belongs to a run that left no checkpoint
        return None
    state.wait_for_everyone()
    row = rewind_log(log_path, int(last.name.split("-")[-1])) if state.is_main_process else None
    state.wait_for_everyone()
    if not state.is_main_process:
        from distill.jsonl import JsonlReader

        rows = list(JsonlReader(log_path, on_error="skip")) if log_path.exists() else []
        row = rows[-1] if rows else None
    return row


def packed_data(config: SFTConfig, model_path: str, attention: str, num_proc: int | None):
    """The kept traces tokenized (cached under output_dir/cache), then packed: (data, row length, train rows,
    eval rows or None)."""
    template = (config.chat_template, tuple(config.chat_template_tokens))
    data = build_dataset(Path(config.train_file), model_path, config.max_length, config.overlong,
                         config.eval_fraction, config.seed, Path(config.output_dir) / "cache", num_proc, *template)
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


def _fit(config: SFTConfig, state, model_path: str, precision: str, progress: bool,
         callbacks: list[TrainerCallback]) -> dict[str, Any]:
    """Tokenize, pack, train (resuming), evaluate and save the model or adapter; returns the run's metrics."""
    out = Path(config.output_dir)
    last = _resume_point(out, config_hash(config))
    template = (config.chat_template, tuple(config.chat_template_tokens))
    tokenizer = load_tokenizer(model_path, *template)
    deterministic_before = determinism_state()
    num_proc = default_num_proc()
    attention = config.attn_implementation or attention_implementation()
    # Rank 0 tokenizes and packs into the Arrow cache; the other ranks then read the same cache.
    with state.main_process_first():
        data, rows_of, train_rows, eval_rows = packed_data(config, model_path, attention, num_proc)

    log_path = out / "log.jsonl"
    resumed_row = _rewound_log(state, log_path, last)
    tokens = TokenCounter()
    if resumed_row:
        tokens.real = int(resumed_row.get("tokens", 0))
        tokens.supervised = int(resumed_row.get("loss_tokens", 0))

    hooks: list[TrainerCallback] = [JsonlLogCallback(log_path, tokens, resumed_row)]
    if progress:
        hooks.append(RichProgressCallback(tokens))
    # Sharded strategies: the model runs a forward pass only once wrapped, so the check waits for step 0.
    collator = collator_for(tokenizer.pad_token_id, attention)
    late_check = PackingCheckAtStart(collator) if config.packing and requested_strategy() in SHARDED else None
    # The arguments before the model: under ZeRO-3 they register the DeepSpeed config that makes
    # from_pretrained load each rank's partition (zero3_init_flag) instead of the whole student.
    sharded_at_load = shards_at_load(config.method)
    args = _trainer_args(config, precision, out / "checkpoints", eval_rows is not None, sharded_at_load)
    loss = loss_path(config.liger)
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
        fused_loss=tiled_head(loss),
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

    # The full model itself, or the adapter; staged then renamed, so it exists only when complete.
    trainer.accelerator.unwrap_model(trainer.model).config.use_cache = True
    target = out / ("model" if config.method == "full" else "adapter")
    staging = target.with_name(f".{target.name}.tmp")
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    trainer.save_model(str(staging))  # collective under FSDP/ZeRO-3: every rank calls it
    state.wait_for_everyone()
    if state.is_main_process:
        publish_dir(staging, target)
        if config.method == "full":
            ensure_stop_token(target, data.stop_id)
            if torch.cuda.is_available():  # CPU runs keep exact fp32 weights (the strategies are compared to 1e-5)
                save_in_precision(target, precision)
    padded = max(tokens.padded, 1)
    return {
        "config_hash": config_hash(config), "method": config.method, "precision": precision, "model": shown_model(model_path),
        "steps": output.global_step, "resumed_from_step": int(last.name.split("-")[-1]) if last else 0,
        "train_loss": output.training_loss, "eval_loss": final_eval.get("eval_loss"),
        "train_seconds": round(train_seconds, 2), "tokens": tokens.real, "loss_tokens": tokens.supervised,
        "tokens_per_s": round((tokens.real - tokens_before) / max(train_seconds, 1e-9), 2),
        "padding_fraction": round(1 - tokens.real / padded, 4) if tokens.padded else None,
        "packing": config.packing, "packing_check": packing_check, "row_length": rows_of if config.packing else None,
        "attn_implementation": attention, "deterministic": config.deterministic, "seed": config.seed,
        "strategy": strategy, "model_loading": loading, "loss_path": loss,
        "train_rows": len(train_rows), "eval_rows": len(eval_rows) if eval_rows is not None else 0,
        "stop_token_id": data.stop_id, "peak_rss_gib": round(_peak_rss_gib(), 3),
        "peak_cuda_gib": round(torch.cuda.max_memory_allocated() / 1024 ** 3, 3) if torch.cuda.is_available() else None,
        "world_size": state.num_processes, "data": data.report,
    }


def train(config: SFTConfig, *, progress: bool = True, callbacks: list[TrainerCallback] | None = None,
          eval_prompts: PromptConfig | None = None) -> TrainResult:
    """Fine-tune `config.model` on `config.train_file` into `config.output_dir`.

    Crash-safe at every phase: training resumes from the newest complete checkpoint, a finished training
    phase (trained.json) is not redone when only the merge was interrupted, and a finished run
    (result.json, same config hash) returns its recorded result. Under `accelerate launch` every rank
    trains and only rank 0 writes. `callbacks` are extra transformers TrainerCallbacks.
    """
    from accelerate import PartialState

    if config.train_file is None:
        raise DistillError("sft.train_file is not set (the kept traces, e.g. RUN_DIR/filter/kept.jsonl)")
    if config.output_dir is None:
        raise DistillError("sft.output_dir is not set (where the student goes)")
    out = Path(config.output_dir)
    digest = config_hash(config)
    check_train_file(config.train_file)  # every row a trace, at least one: named errors before any weights load
    # train_file is not part of the config hash (its path moves with the run dir); its content is.
    data_digest = file_digest(Path(config.train_file))
    done, trained_marker = out / "result.json", out / "trained.json"
    if done.exists():
        previous = read_json(done)
        if _same_run(previous.get("metrics", {}), digest, data_digest):
            return TrainResult.from_json(previous)
    # cpu= must match what the Trainer asks for, or a CPU process group is never joined (every rank main).
    refuse_data_parallel(torch.cuda.device_count() if torch.cuda.is_available() else 0,
                         int(os.environ.get("WORLD_SIZE", "1")))
    state = PartialState(cpu=not torch.cuda.is_available())
    main = state.is_main_process
    _resume_point(out, digest)  # refuse another config's checkpoints before writing anything
    if main:
        _drop_stale_checkpoints(out, data_digest)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "sft_config.json", {"config_hash": digest, "train_file_digest": data_digest,
                                                    "config": config.model_dump(mode="json")})
    state.wait_for_everyone()

    model_path = resolve_model(config.model)
    previous = read_json(trained_marker) if trained_marker.exists() else {}
    if _same_run(previous, digest, data_digest):
        metrics = previous  # trained and saved already; only the merge / bookkeeping was interrupted
    else:
        refuse(check(config, first_trace(Path(config.train_file)), eval_prompts, model_path))
        metrics = {**_fit(config, state, model_path, resolve_precision(config.precision), progress,
                          list(callbacks or [])), "train_file_digest": data_digest}
        free_device_memory()  # the trainer, model and optimizer are gone with _fit's frame
        if main:
            atomic_write_json(trained_marker, metrics)
    state.wait_for_everyone()

    adapter_dir, merged_dir = finished_folders(config, out, model_path, metrics["stop_token_id"], merge_here=main)
    log_path, plot_path = out / "log.jsonl", out / "training.png"
    result = TrainResult(output_dir=out, adapter_dir=adapter_dir, merged_dir=merged_dir, metrics=metrics,
                         log_path=log_path, plot_path=plot_path)
    if main:
        plot_log(log_path, plot_path)
        atomic_write_json(out / "data_report.json", metrics["data"])
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(done, result.to_json())
    # No barrier after the merge: rank 0 alone merges (minutes for a 32B adapter, on the CPU), and the other
    # ranks waiting for it at a barrier would run into the collective timeout (NCCL's 10 minutes); they have
    # nothing left to do, and `accelerate launch` returns when rank 0 does.
    return result


def dry_run(config: SFTConfig, world_size: int = 1) -> dict[str, Any]:
    """The resolved config, its data checked and counted, parameter counts and a per-device memory estimate;
    loads no weights."""
    if world_size < 1:
        raise DistillError(f"world_size {world_size}: expected 1 or more devices")
    # Bad data is the cheap error: checked before the model is looked at. Without a train file (a memory
    # estimate before the data exists) there is nothing to check.
    records = check_train_file(config.train_file) if config.train_file is not None else None
    model_path = resolve_model(config.model)
    precision = resolve_precision(config.precision)
    counts, model_config = count_parameters(model_path, config)
    memory = estimate(ModelShape.from_config(model_config), counts, method=config.method, precision=precision,
                      max_length=config.max_length, per_device_batch_size=config.per_device_batch_size,
                      gradient_checkpointing=config.gradient_checkpointing, world_size=world_size,
                      double_quant=config.quant.double_quant, optim=config.optim,
                      loss_path=loss_path(config.liger), device="gpu" if torch.cuda.is_available() else "cpu",
                      checkpoint_bytes=checkpoint_bytes(model_path, model_config, counts.total))
    sequences = config.per_device_batch_size * config.gradient_accumulation_steps * world_size
    return {
        "config": config.model_dump(mode="json"), "config_hash": config_hash(config),
        "model_path": model_path, "method": config.method, "precision": precision, "world_size": world_size,
        "parameters": {"total": counts.total, "trainable": counts.trainable,
                       "trainable_percent": round(100 * counts.trainable / counts.total, 4),
                       "nf4_quantized": counts.quantizable if config.method == "qlora" else 0},
        "global_batch": {"rows": sequences, "max_tokens": sequences * config.max_length,
                         "packing": config.packing},
        "memory": memory,
        "train_file": {"path": config.train_file and str(config.train_file), "records": records},
    }
