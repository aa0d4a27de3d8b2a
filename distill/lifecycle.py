"""One training run's lifecycle, shared by `sft`, `rl` and `kd`: each trainer is its own recipe for a step, and
this module is everything around it, so the three resume, save and finish alike.

A run folder (the trainer's output_dir) goes through, in order:

    finished        result.json of the same run: its TrainResult comes back and nothing loads
    open            refuse another config's checkpoints, drop checkpoints of other inputs, write the config
                    stamp (sft_config.json / rl_config.json / kd_config.json: what the checkpoints belong to)
    resume point    the newest complete checkpoints/checkpoint-N
    log             a fresh start deletes the old log.jsonl; a resumed run rewinds it to step N
    fit             the trainer's recipe
    save            model/ (full) or adapter/, staged and then renamed: never a half-written folder
    trained.json    training and save finished: a rerun goes straight to the merge
    finish          merged/ (LoRA, QLoRA with merge=true), the plot, metrics.json, result.json last

Every file name and JSON key here is what run folders already on disk hold: change one and old runs stop
resuming. Under `accelerate launch` every rank runs the lifecycle and only the main process writes; on one
process the rank barriers are no-ops.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.config import TrainingMethod, config_hash
from distill.errors import DistillError
from distill.files import atomic_write_json, atomic_write_text, move_aside, publish_dir, read_json
from distill.jsonl import JsonlReader

LOG, RESULT, TRAINED, METRICS = "log.jsonl", "result.json", "trained.json", "metrics.json"


@dataclass
class TrainResult:
    """What every trainer returns, and what result.json holds."""

    output_dir: Path
    adapter_dir: Path | None
    merged_dir: Path | None
    metrics: dict[str, Any]
    log_path: Path
    plot_path: Path

    @property
    def policy(self) -> Path:
        """The folder vLLM and `distill eval` load."""
        return self.merged_dir or self.adapter_dir or self.output_dir

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainResult:
        paths = ("output_dir", "adapter_dir", "merged_dir", "log_path", "plot_path")
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()
                      if k in cls.__dataclass_fields__})


# ------------------------------------------------------------------------------------------- before any weights
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


def refuse_data_parallel_here() -> None:
    """refuse_data_parallel for this process: its visible GPUs and the launcher's WORLD_SIZE."""
    refuse_data_parallel(torch.cuda.device_count() if torch.cuda.is_available() else 0,
                         int(os.environ.get("WORLD_SIZE", "1")))


def last_complete_checkpoint(folder: Path, marker: str = "trainer_state.json") -> Path | None:
    """The newest checkpoint-N holding `marker` (written last, so the checkpoint is whole). transformers'
    Trainer (sft, rl) writes trainer_state.json last; kd's own loop writes state.json."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / marker).exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def checkpoint_step(checkpoint: Path | None) -> int:
    """The step checkpoint-N was saved at; 0 for a fresh start."""
    return int(checkpoint.name.split("-")[-1]) if checkpoint is not None else 0


# ------------------------------------------------------------------------------------------------ the run folder
@dataclass
class RunFolder:
    """A trainer's output_dir and what makes a run in it the same run: the config hash, and the digests of
    inputs the hash leaves out (`inputs`: sft's train file, whose path moves with the run dir but whose
    content is the run's)."""

    out: Path
    stamp: str  # sft_config.json, rl_config.json or kd_config.json
    kind: str  # how the refusal names the config: "SFT", "RL", "kd"
    config_hash: str
    inputs: dict[str, str] = field(default_factory=dict)
    checkpoint_marker: str = "trainer_state.json"

    @property
    def log_path(self) -> Path:
        return self.out / LOG

    def same_run(self, recorded: dict[str, Any]) -> bool:
        return recorded.get("config_hash") == self.config_hash and \
            all(recorded.get(k) == v for k, v in self.inputs.items())

    def finished(self) -> TrainResult | None:
        """The recorded result of this same run, if it finished: nothing to load, nothing to redo."""
        done = self.out / RESULT
        if done.exists():
            previous = read_json(done)
            if self.same_run(previous.get("metrics", {})):
                return TrainResult.from_json(previous)
        return None

    def resume_point(self) -> Path | None:
        """The checkpoint to resume from, refusing checkpoints another config left behind."""
        last = last_complete_checkpoint(self.out / "checkpoints", self.checkpoint_marker)
        stamp = self.out / self.stamp
        if last is not None and stamp.exists() and read_json(stamp).get("config_hash") != self.config_hash:
            raise DistillError(f"{self.out} holds checkpoints of a different {self.kind} config; use another "
                               f"output_dir or delete {self.out / 'checkpoints'} to start over")
        return last

    def open(self, config: TrainingMethod):
        """Refuse another config's checkpoints, then (main process) move aside what other inputs trained and stamp
        the folder with this config. Returns the process state whose barriers the rest of the run uses."""
        from accelerate import PartialState

        # cpu= must match what the Trainer asks for, or a CPU process group is never joined (every rank main).
        state = PartialState(cpu=not torch.cuda.is_available())
        self.resume_point()  # before anything is written
        if state.is_main_process:
            self._move_aside_stale_run()
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / self.stamp, {"config_hash": self.config_hash, **self.inputs,
                                                      "config": config.model_dump(mode="json")})
        state.wait_for_everyone()
        return state

    def _move_aside_stale_run(self) -> None:
        """Checkpoints trained on another version of an input are not resumed: the run starts over, and what the
        old input trained moves to OUT/stale/<time>-<kind>-inputs/ (distill's one staleness policy)."""
        stamp = self.out / self.stamp
        if not self.inputs or not stamp.exists():
            return
        recorded = read_json(stamp)
        if any(recorded.get(k) != v for k, v in self.inputs.items()):
            move_aside([self.out / name for name in ("checkpoints", TRAINED, RESULT, LOG)],
                       self.out / "stale", f"{self.kind.lower()}-inputs")

    def trained(self) -> dict[str, Any] | None:
        """trained.json's metrics when this same run trained and saved already (only the merge or the
        bookkeeping was interrupted)."""
        marker = self.out / TRAINED
        previous = read_json(marker) if marker.exists() else {}
        return previous if self.same_run(previous) else None

    def mark_trained(self, state, metrics: dict[str, Any]) -> dict[str, Any]:
        """Record a finished fit (its metrics and the input digests) in trained.json."""
        metrics = {**metrics, **self.inputs}
        free_device_memory()  # the trainer, model and optimizer went with the fit's frame
        if state.is_main_process:
            atomic_write_json(self.out / TRAINED, metrics)
        state.wait_for_everyone()
        return metrics

    def finish(self, config: TrainingMethod, state, model_path: str, metrics: dict[str, Any],
               plot: Callable[[Path, Path], Any], plot_name: str,
               reports: dict[str, Any] | None = None) -> TrainResult:
        """Merge (once), plot, write the reports, metrics.json, and result.json last: the run is complete."""
        from distill.sft.merge import finished_folders

        main = state.is_main_process
        adapter_dir, merged_dir = finished_folders(config, self.out, model_path, metrics["stop_token_id"],
                                                   merge_here=main)
        result = TrainResult(self.out, adapter_dir, merged_dir, metrics, self.log_path, self.out / plot_name)
        if main:
            plot(result.log_path, result.plot_path)
            for name, report in (reports or {}).items():
                atomic_write_json(self.out / name, report)
            atomic_write_json(self.out / METRICS, metrics)
            atomic_write_json(self.out / RESULT, result.to_json())
        # No barrier after the merge: rank 0 alone merges (minutes for a 32B adapter, on the CPU), and the other
        # ranks waiting for it at a barrier would run into the collective timeout (NCCL's 10 minutes); they have
        # nothing left to do, and `accelerate launch` returns when rank 0 does.
        return result


# ------------------------------------------------------------------------------------------------------ the log
def read_log(path: Path) -> list[dict[str, Any]]:
    return list(JsonlReader(path, on_error="skip")) if Path(path).exists() else []


def rewind_log(path: Path, step: int) -> dict[str, Any] | None:
    """Keep the rows up to `step` (a resumed run redoes the steps after its checkpoint); return the last one."""
    if not path.exists():
        return None
    rows = [row for row in read_log(path) if row.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows[-1] if rows else None


def rewound_log(state, log_path: Path, last: Path | None) -> dict[str, Any] | None:
    """The log row a resumed run continues from (its step count, tokens and clock); None for a fresh start."""
    if last is None:
        if state.is_main_process and log_path.exists():
            log_path.unlink()  # a fresh start: the old log belongs to a run that left no checkpoint
        return None
    state.wait_for_everyone()
    row = rewind_log(log_path, checkpoint_step(last)) if state.is_main_process else None
    state.wait_for_everyone()
    if not state.is_main_process:  # the main process rewound it: read its last row
        rows = read_log(log_path)
        row = rows[-1] if rows else None
    return row


# -------------------------------------------------------------------------------------------------- the save
def save_trained(state, out: Path, method: str, save: Callable[[Path], Any], stop_id: int, *,
                 tokenizer=None, cast_to: str | None = None) -> Path:
    """The full model (model/) or the adapter (adapter/), written by `save` into a staging folder that is
    renamed when complete, so the folder exists only whole. `save` runs on every rank (collective under
    FSDP/ZeRO-3); the rest on the main process. A full model stops on `stop_id` (the end of the trained turn)
    and, given `cast_to`, has its fp32 master weights rewritten in that precision."""
    from distill.sft.merge import ensure_stop_token, save_in_precision

    target = out / ("model" if method == "full" else "adapter")
    staging = target.with_name(f".{target.name}.tmp")
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    save(staging)
    state.wait_for_everyone()
    if state.is_main_process:
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if method == "full":
            ensure_stop_token(staging, stop_id)
            if cast_to is not None:
                save_in_precision(staging, cast_to)
        publish_dir(staging, target)
    return target


# ------------------------------------------------------------------------------------------- process resources
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


def free_device_memory() -> None:
    """Return what a finished stage's tensors held to the device, for the next stage's engine."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory() -> dict[str, float | None]:
    """metrics' peak_rss_gib (this process) and peak_cuda_gib (None without a GPU)."""
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 3),  # KiB
            "peak_cuda_gib": round(torch.cuda.max_memory_allocated() / 1024 ** 3, 3)
            if torch.cuda.is_available() else None}


# ------------------------------------------------------------------------------------------------------ dry runs
def dry_run_basics(config: TrainingMethod, model_path: str, world_size: int):
    """What every dry run reports first (the config, its hash, model, method, precision, world size), with the
    student's parameter counts and model config from config.json alone: (report, counts, model config)."""
    from distill.sft.modeling import count_parameters, resolve_precision

    precision = resolve_precision(config.precision)
    counts, model_config = count_parameters(model_path, config)
    report = {"config": config.model_dump(mode="json"), "config_hash": config_hash(config), "model_path": model_path,
              "method": config.method, "precision": precision, "world_size": world_size}
    return report, counts, model_config


def parameters_report(counts, **more: int) -> dict[str, Any]:
    return {"total": counts.total, "trainable": counts.trainable, **more,
            "trainable_percent": round(100 * counts.trainable / counts.total, 4)}


def memory_estimate(config: TrainingMethod, report: dict[str, Any], counts, model_config, **workload) -> dict:
    """sft.memory's per-device estimate for this method and precision; `workload`: the sequence length, batch
    and what else the trainer holds (estimate's other arguments)."""
    from distill.sft.memory import ModelShape, estimate

    return estimate(ModelShape.from_config(model_config), counts, method=config.method,
                    precision=report["precision"], world_size=report["world_size"],
                    double_quant=config.quant.double_quant, **workload)
