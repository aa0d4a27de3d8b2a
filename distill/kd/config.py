"""`kd:` in a recipe: distillation from the teacher's log-probabilities (on-policy, and offline top-k).

The classes below are meant to live in distill.config beside the other stages' configs (which this module
would then re-export): distill.config cannot import them from here without an import cycle.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from distill.config import Config, LoraConfig, PromptConfig, QuantConfig, RewardConfig, SandboxConfig


class OfflineKDConfig(Config):
    """Offline logit KD: the teacher's top-k log-probabilities stored per generated token, and the SFT mix."""

    top_k: int = Field(20, ge=1, le=4096, description="teacher log-probs kept per token (k = vocabulary: exact KL)")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="loss = alpha x top-k forward KL + (1 - alpha) x CE")


class KDConfig(Config):
    """On-policy distillation: the student samples, the teacher scores every sampled token, the student is
    trained on the per-token reverse KL (optionally plus the verifier's rewards). Defaults and their sources:

        loss reverse_kl, estimator k1, kl_coef 1   tinker-cookbook's on-policy distillation (per-token reverse KL
                                                   as the advantage, no discounting); Qwen3's on-policy stage
        samples_per_prompt 4, prompts_per_step 4   groups of 4, as tinker-cookbook's small-scale recipes
        temperature 1.0, top_p 1.0                 sample from the student's own distribution: the KL is estimated
                                                   under it, so a reshaped sampler would bias the estimate
        learning_rate 1e-4 (LoRA)                  LoRA rates (full fine-tunes: ~1e-5 and below)
        jsd_beta 1.0                               TRL's DistillationTrainer default (reverse KL)
        offline.top_k 20, offline.alpha 0.5        axolotl's KD defaults (top-k logprobs, KD/CE mix)
    """

    unhashed: ClassVar[frozenset[str]] = frozenset(
        {"problems", "output_dir", "logging_steps", "save_steps", "save_total_limit", "reward_workers"})

    model: str | None = Field(None, description="student: hub id, folder, adapter folder or bundled:NAME; in a "
                                                 "recipe, unset = the SFT student")
    teacher: str | None = Field(None, description="teacher: hub id, folder or bundled:NAME; must share the "
                                                   "student's tokenizer")
    problems: Path | None = Field(None, description="Problem JSONL the student samples answers to")
    output_dir: Path | None = Field(None, description="default RUN_DIR/kd")
    method: Literal["full", "lora", "qlora"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    template: Literal["chat", "r1-zero"] = Field("chat", description="as rl.template")

    loss: Literal["reverse_kl", "jsd"] = Field(
        "reverse_kl", description="reverse_kl: sampled-token estimate as a policy-gradient advantage; jsd: TRL's "
                                  "generalized JSD over the full vocabulary (jsd_beta)")
    estimator: Literal["k1", "k3"] = Field("k1", description="KL estimator of the reverse_kl advantage")
    kl_coef: float = Field(1.0, gt=0, description="weight of the KL advantage (or of the JSD loss)")
    jsd_beta: float = Field(1.0, ge=0.0, le=1.0, description="loss=jsd: 0 forward KL, 0.5 JSD, 1 reverse KL")
    rewards: list[RewardConfig] = Field(
        default_factory=list, description="verifier rewards mixed into the advantage (group-centred), each x weight; "
                                          "empty = pure distillation")

    samples_per_prompt: int = Field(4, ge=1, description="completions sampled per problem")
    prompts_per_step: int = Field(4, ge=1, description="distinct problems per optimizer step")
    max_completion_length: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_steps: int = Field(100, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    teacher_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: the student's compute precision")
    gradient_checkpointing: bool = False

    offline: OfflineKDConfig = Field(default_factory=OfflineKDConfig)

    math_timeout_s: float = Field(5.0, gt=0)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    reward_workers: int = Field(0, ge=0, description="reward processes; 0 = all cores")
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(10, ge=1, description="checkpoint every N steps (a rerun resumes from the newest)")
    save_total_limit: int | None = Field(2, ge=1)
    seed: int = 42
    merge: bool = Field(True, description="also save a merged model vLLM can load (LoRA/QLoRA)")

    @model_validator(mode="after")
    def _consistent(self) -> KDConfig:
        if self.rewards and self.samples_per_prompt < 2:
            raise ValueError("rewards are centred within each problem's samples: samples_per_prompt must be >= 2 "
                             "when rewards are set")
        if self.loss == "jsd" and "estimator" in self.model_fields_set:
            raise ValueError("estimator applies to loss=reverse_kl only (jsd uses the full distributions)")
        return self
