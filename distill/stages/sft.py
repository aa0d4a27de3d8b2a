"""sft: fine-tune the student on the kept traces (R1's distillation)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe, config_hash
from distill.layout import RunLayout
from distill.stages.base import StageResult, key_of, own_model, small


def engine_stays_for_training(on_gpu: bool) -> bool:
    """Whether the teacher's engine may stay alive while a training stage runs.

    On a GPU the engine keeps vllm.gpu_memory_utilization of the card (0.9 by default) for its weights and KV
    cache, so the student would not fit beside it; eval starts its own engine after training. On a CPU the
    engine's share is the KV cache (vllm.kv_cache_gib of RAM), and keeping it saves eval a restart when eval
    serves the teacher's model (the demo's base), so it stays."""
    return not on_gpu


class SFT:
    name = "sft"

    def enabled(self, recipe: Recipe) -> bool:
        return not own_model(recipe)

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        return key_of(config_hash(recipe.sft), upstream["filter"])

    def outputs(self, layout: RunLayout) -> list[Path]:
        return [layout.student_dir]

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        import torch

        from distill.generation.engine import shutdown_llm
        from distill.sft import train

        # sft.logit_kd loads the teacher with transformers to score the traces: the engine's memory goes first.
        if not engine_stays_for_training(torch.cuda.is_available()) or recipe.sft.logit_kd is not None:
            shutdown_llm()
        # train() returns the device memory its trainer held before eval's engine starts.
        result = train(recipe.sft, progress=progress, eval_prompts=recipe.eval.prompts)
        outputs = {"student": str(result.merged_dir or result.adapter_dir or result.output_dir),
                   "output_dir": str(result.output_dir)}
        for name in ("adapter_dir", "merged_dir", "log_path", "plot_path"):
            value = getattr(result, name, None)
            if value is not None:
                outputs[name] = str(value)
        return StageResult(outputs, {"metrics": small(result.metrics)})
