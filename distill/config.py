"""Typed configs: one pydantic model per stage, and a Recipe that holds them.

These classes are the single source of truth for the YAML recipes, the CLI (`key=value` dotted
overrides) and the Python API. Every model forbids unknown keys, so a typo fails loudly with the file
and the field path instead of being silently ignored.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distill.errors import DistillError
from distill.files import InputError, read_text

DEFAULT_MODEL = "bundled:smollm2-135m-instruct"

# R1 (DeepSeek-AI 2025, sec. 2.3 / eval setup): no system prompt, the math instruction below.
MATH_PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
CODE_PROMPT = (
    "{problem}\nPlease reason step by step, then give your complete solution as one Python code block."
)
MCQ_PROMPT = (
    "{problem}\n\n{choices}\n\nPlease reason step by step, and put the letter of your final answer "
    "within \\boxed{{}}."
)


class Config(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)
    # Fields that do not change a stage's output (paths, concurrency): left out of its config hash.
    unhashed: ClassVar[frozenset[str]] = frozenset()
    # Fields added after runs were made: hashed only when set away from their default, so runs written
    # before the field existed keep their hash (and resume, and are skipped by `distill run`).
    hashed_if_set: ClassVar[frozenset[str]] = frozenset()
    # Fields removed after runs were made, with the value they always held: still hashed, so those runs keep
    # their hash (and resume, and are skipped by `distill run`).
    retired: ClassVar[dict[str, Any]] = {}


def config_hash(config: Config) -> str:
    """Stable 12-hex digest of what determines a stage's output."""

    def strip(cfg: Any) -> Any:
        if isinstance(cfg, Config):
            fields = type(cfg).model_fields
            return {**cfg.retired, **{k: strip(getattr(cfg, k)) for k in fields if k not in cfg.unhashed and not (
                k in cfg.hashed_if_set and getattr(cfg, k) == fields[k].get_default(call_default_factory=True))}}
        if isinstance(cfg, (list, tuple)):
            return [strip(v) for v in cfg]
        if isinstance(cfg, dict):
            return {k: strip(v) for k, v in cfg.items()}
        if isinstance(cfg, Path):
            return str(cfg)
        return cfg

    blob = json.dumps(strip(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------- generation
class SamplingConfig(Config):
    temperature: float = Field(0.6, ge=0.0, description="R1 default 0.6")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="R1 default 0.95")
    max_tokens: int = Field(32768, ge=1, description="completion budget; R1 uses 32k for real teachers")
    n: int = Field(1, ge=1, description="samples per problem")
    seed: int = Field(0, description="base seed; each (problem, sample) derives its own from it")
    hashed_if_set: ClassVar[frozenset[str]] = frozenset(
        {"sampler", "stop", "top_k", "min_p", "repetition_penalty", "presence_penalty"})
    # Sampling controls: every backend honours them; 0 / 1.0 / [] mean "off".
    sampler: Literal["auto", "native", "seeded"] = Field(
        "auto", description="vllm: native = vLLM's per-request seeds (CUDA builds), seeded = distill's logits "
                            "processor (reproducible on every build); auto picks native where it works")
    stop: list[str] = Field(default_factory=list, description="stop strings (not included in the completion)")
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens; 0 = off")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="drop tokens below min_p x the top probability")
    repetition_penalty: float = Field(1.0, gt=0.0, description="> 1 discourages tokens already in prompt or output")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="subtracted once from generated tokens' logits")


class PromptConfig(Config):
    system_prompt: str | None = Field(None, description="R1: none")
    templates: dict[str, str] = Field(
        default_factory=lambda: {"math": MATH_PROMPT, "code": CODE_PROMPT, "mcq": MCQ_PROMPT,
                                 "text": "{problem}"},
        description="per-domain user-turn templates; {problem} and, for mcq, {choices}",
    )
    prefill_think: bool = Field(True, description="start the assistant turn with '<think>\\n' (R1)")
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)


class VLLMConfig(Config):
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    dtype: str = "auto"
    max_model_len: int | None = Field(None, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of each GPU's memory vLLM may take")
    kv_cache_gib: int = Field(4, ge=1, description="VLLM_CPU_KVCACHE_SPACE on CPU builds")
    max_num_seqs: int = Field(256, ge=1)
    enforce_eager: bool = False
    extra: dict[str, Any] = Field(default_factory=dict, description="passed to vllm.LLM as is")


class OpenAIConfig(Config):
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    served_model: str | None = Field(None, description="model name on the server (default: model)")
    concurrency: int = Field(32, ge=1)
    max_retries: int = Field(6, ge=0)
    timeout_s: float = Field(600.0, gt=0)
    token_limit_param: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        "auto", description="how the token limit is sent; auto: max_tokens, switching to max_completion_tokens "
                            "when the server asks for it (OpenAI's reasoning models)")


class HFConfig(Config):
    batch_size: int = Field(16, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class RayConfig(Config):
    """A Ray cluster for `executor: ray`: engine replicas as actors, verification as tasks."""

    address: str | None = Field(None, description="ray://HOST:10001 or HOST:6379 of a running cluster; "
                                                  "None: join RAY_ADDRESS, else start a local one")
    replicas: int = Field(2, ge=1, description="generation: engine replicas (actors); filter: verifier actors")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved by each replica")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (vllm: tensor_parallel_size)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per replica")
    chunk: int = Field(8, ge=1, description="requests (or traces) sent to a replica per call")
    max_restarts: int = Field(3, ge=0, description="times a dead replica is restarted before the run fails")
    object_store_gib: float = Field(0.25, gt=0, description="object store of a local cluster started here")


class EngineConfig(Config):
    """Which engine samples and how it runs: one block for generate and eval's model runs (a recipe's eval
    takes generate's when it sets none). Only `backend` changes what is sampled; the rest is how."""

    unhashed: ClassVar[frozenset[str]] = frozenset({"vllm", "openai", "hf", "executor", "ray"})

    backend: Literal["vllm", "openai", "hf"] = "vllm"
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)
    hf: HFConfig = Field(default_factory=HFConfig)
    executor: Literal["local", "ray"] = Field("local", description="ray: engine replicas on a Ray cluster")
    ray: RayConfig = Field(default_factory=RayConfig)


class GenerateConfig(EngineConfig):
    unhashed: ClassVar[frozenset[str]] = EngineConfig.unhashed | {"problems", "output", "shard", "batch_size", "limit"}

    model: str = Field(DEFAULT_MODEL, description="hub id, local folder, .gguf file or bundled:NAME")
    problems: Path | None = Field(None, description="Problem JSONL (or an importer spec, see docs)")
    output: Path | None = Field(None, description="Trace JSONL; default RUN_DIR/traces.jsonl")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    reasoning_format: Literal["auto", "think", "plain"] = Field(
        "auto", description="how to split reasoning from answer: <think> tags, plain CoT, or detect")
    shard: str | None = Field(None, pattern=r"^\d+/\d+$", description="K/N: this worker's slice")
    batch_size: int = Field(256, ge=1, description="problems in flight at once (bounds memory)")
    limit: int | None = Field(None, ge=1, description="only the first N problems")

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, value: str | None) -> str | None:
        if value is not None:
            k, n = (int(part) for part in value.split("/"))
            if n < 1 or k >= n:
                raise ValueError("K must be in 0..N-1 (shards are numbered from 0: 0/4 is the first of four)")
        return value


# --------------------------------------------------------------------------------------------- filter
class SandboxConfig(Config):
    timeout_s: float = Field(10.0, gt=0, description="seconds a program may run")
    memory_mb: int = Field(1024, ge=1)
    max_processes: int = Field(64, ge=1)
    max_file_mb: int = Field(16, ge=1)
    max_output_kb: int = Field(256, ge=1)
    max_disk_mb: int = Field(64, ge=1, description="all files a program writes, together (its directory is a "
                                                   "tmpfs this size)")
    allow_weak: bool = Field(False, description="run code verification even where the host allows neither "
                             "namespaces nor Landlock (only rlimits and an audit hook left)")


class QualityConfig(Config):
    require_think: bool = True
    drop_truncated: bool = True
    max_lang_mix: float = Field(0.05, ge=0, le=1, description="share of letters in foreign scripts")
    repeat_ngram: int = Field(20, ge=1)
    max_repeat_frac: float = Field(0.3, ge=0, le=1, description="share of repeated word n-grams")
    min_tokens: int = Field(0, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    max_paragraph_chars: int = Field(3000, ge=1)
    allow_code_in_reasoning: bool = False


class DedupConfig(Config):
    exact: bool = True
    near: bool = True
    threshold: float = Field(0.9, gt=0, le=1, description="MinHash Jaccard above which two traces are near-duplicates")
    num_perm: int = Field(128, ge=1)
    shingle: int = Field(5, ge=1)


class DecontamConfig(Config):
    against: list[Path] = Field(default_factory=list, description="Problem JSONL of every evaluation set")
    ngram: int = Field(8, ge=1)


class SelectConfig(Config):
    policy: Literal["all", "shortest", "random", "diverse"] = "all"
    k: int | None = Field(None, ge=1, description="keep at most k verified traces per problem")
    seed: int = 0


class FilterConfig(Config):
    unhashed: ClassVar[frozenset[str]] = frozenset(
        {"input", "problems", "output_dir", "workers", "executor", "ray", "allow_empty"})

    input: Path | None = Field(None, description="Trace JSONL; default RUN_DIR/traces.jsonl")
    problems: Path | None = Field(None, description="Problem JSONL with gold answers / tests")
    output_dir: Path | None = Field(None, description="default RUN_DIR/filter")
    verify: bool = True
    math_timeout_s: float = Field(5.0, gt=0, description="seconds math-verify may take on one trace")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontaminate: DecontamConfig = Field(default_factory=DecontamConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    checks: list[str] = Field(default_factory=list, description="extra per-trace checks: registered name or module:function")
    steps: list[str] = Field(default_factory=list, description="extra dataset-level steps: registered name or module:function")
    workers: int = Field(0, ge=0, description="processes; 0 = all cores")
    executor: Literal["local", "ray"] = Field("local", description="ray: verification spread over a Ray cluster")
    ray: RayConfig = Field(default_factory=RayConfig)
    allow_empty: bool = Field(False, description="accept an input with no traces (or a filter that keeps none of "
                                                 "them) and write empty outputs; otherwise that is an error")


# ------------------------------------------------------------------------------------------------ sft
class LoraConfig(Config):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class QuantConfig(Config):
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class TrainingMethod(Config):
    """How a trainer holds the model's weights, shared by sft, rl and kd (one definition, one loader:
    distill.sft.modeling.load_model): full fine-tune, LoRA adapters, or LoRA over a 4-bit base (QLoRA)."""

    method: Literal["full", "lora", "qlora"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    merge: bool = Field(True, description="also save a merged model vLLM can load (LoRA/QLoRA)")


class OfflineKDConfig(Config):
    """`sft.logit_kd`: offline logit KD inside SFT. The teacher's top-k log-probabilities over every token SFT trains
    on are stored once (distill.kd.offline), and the loss becomes alpha x top-k forward KL + (1 - alpha) x CE.
    Defaults and their sources:

        top_k 20, alpha 0.5     axolotl's KD defaults (top-k logprobs, KD/CE mix)
        teacher_dtype auto      the student's compute precision, as kd's teacher
    """

    unhashed: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    teacher: str | None = Field(None, description="hub id, folder or bundled:NAME sharing the student's tokenizer; "
                                                   "in a recipe that generates, unset = generate.model")
    top_k: int = Field(20, ge=1, le=4096, description="teacher log-probs kept per token (k = vocabulary: exact KL)")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="loss = alpha x top-k forward KL + (1 - alpha) x CE")
    teacher_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="the teacher's weights while it scores the traces; auto: the student's compute precision")
    batch_size: int = Field(4, ge=1, description="traces per teacher forward while storing")


class SFTConfig(TrainingMethod):
    unhashed: ClassVar[frozenset[str]] = frozenset(
        {"train_file", "output_dir", "logging_steps", "save_steps", "eval_steps", "save_total_limit"})
    hashed_if_set: ClassVar[frozenset[str]] = frozenset({"liger", "chat_template", "chat_template_tokens", "logit_kd"})

    model: str = DEFAULT_MODEL
    chat_template: str | None = Field(
        None, description="the student's chat template when it has none (a base model) or should not use its own: "
                          "gemma, chatml, r1-distill, or a .jinja file; saved with the student (distill.chat_templates)")
    chat_template_tokens: list[str] = Field(
        default_factory=list, description="special tokens a .jinja chat_template uses that the student's "
                                          "vocabulary lacks; added and trained (named templates know theirs)")
    train_file: Path | None = Field(None, description="kept traces; default RUN_DIR/filter/kept.jsonl")
    output_dir: Path | None = Field(None, description="default RUN_DIR/student")
    max_length: int = Field(4096, ge=1, description="tokens a training sequence may hold")
    overlong: Literal["drop", "truncate"] = Field("drop", description="what to do with examples over max_length")
    packing: bool = True
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="overrides epochs when > 0")
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler: str = "cosine"
    lr_scheduler_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="passed to the scheduler, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr")
    optim: str = Field("adamw_torch_fused", description="transformers optimizer name, e.g. adamw_8bit, paged_adamw_8bit")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 = off")
    per_device_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    gradient_checkpointing: bool = True
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(50, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="default: save_steps")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints kept on disk (None: all)")
    attn_implementation: str | None = Field(
        None, description="sdpa, eager, flash_attention_2, ...; default flash_attention_2 on GPUs with flash-attn, else sdpa")
    seed: int = 42
    deterministic: bool = Field(
        True, description="same seed on the same machine -> bitwise-identical weights (transformers "
                          "full_determinism: torch deterministic algorithms); see docs/sft.md for its cost")
    liger: Literal["auto", "on", "off"] = Field(
        "auto", description="Liger's fused linear cross-entropy (never materialises the logits); auto: on CUDA "
                            "with liger-kernel installed. The run records the loss path it took (metrics.loss_path)")
    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="any other field of TRL's SFTConfig, passed through as is "
                                          "(e.g. {torch_compile: true, neftune_noise_alpha: 5})")
    logit_kd: OfflineKDConfig | None = Field(
        None, description="offline logit KD: add the forward KL to the teacher's stored top-k log-probs to the "
                          "cross-entropy (docs/sft.md); None = plain SFT")

    @model_validator(mode="after")
    def _kd_loss_path(self) -> SFTConfig:
        # The KD term needs the student's logits at the supervised positions, which Liger's and TRL's fused heads
        # never build; `auto` resolves to off under logit_kd, `on` cannot.
        if self.logit_kd is not None and self.liger == "on":
            raise ValueError("liger=on: logit_kd needs the student's logits at every trained token, which Liger's "
                             "fused loss never builds; set sft.liger=auto (off under logit_kd) or remove sft.logit_kd")
        return self

    @field_validator("trainer_args")
    @classmethod
    def _known_to_trl(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A typo must fail here, naming the field, not be dropped or fail deep inside the trainer."""
        if not value:
            return value
        import dataclasses

        from trl import SFTConfig as TRLSFTConfig  # only when used: TRL loads torch

        known = {f.name for f in dataclasses.fields(TRLSFTConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{unknown} {'is not a field' if len(unknown) == 1 else 'are not fields'} of TRL's "
                             f"SFTConfig (trl {version('trl')})")
        return value


# ----------------------------------------------------------------------------------------------- eval
class BenchmarkConfig(Config):
    name: str
    path: Path | None = Field(None, description="Problem JSONL, dataset file or folder, or hub id; default: the benchmark NAME from the registry (distill.benchmarks)")
    limit: int | None = Field(None, ge=1, description="only the first N problems")


class EvalConfig(EngineConfig):
    """In a recipe, every block below that the eval section leaves out is generate's (sampling, prompts,
    backend and its engine settings) or filter's (the verifier limits): one source, so the base model's
    evaluation also reuses the teacher's vLLM engine. Set a block here to evaluate differently."""

    unhashed: ClassVar[frozenset[str]] = EngineConfig.unhashed | {"output_dir"}
    # Taken from the recipe's other stages when the eval section does not set them (Recipe._wire_stage_paths).
    from_generate: ClassVar[tuple[str, ...]] = ("sampling", "prompts", *EngineConfig.model_fields)
    from_filter: ClassVar[tuple[str, ...]] = ("math_timeout_s", "sandbox")

    models: list[str] = Field(default_factory=list, description="default: the SFT base model and the student")
    benchmarks: list[BenchmarkConfig] = Field(default_factory=list)
    k: int = Field(4, ge=1, description="samples per problem: pass@1 is their mean, cons@k their vote")
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(max_tokens=32768))
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    output_dir: Path | None = Field(None, description="default RUN_DIR/eval")
    math_timeout_s: float = Field(5.0, gt=0, description="seconds math-verify may take on one sample")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)


# --------------------------------------------------------------------------------------------- import
class ImportConfig(Config):
    """A public trace set in place of `generate`: its problems and traces land where generate's would."""

    source: str = Field(..., description="dataset spec: hub id[:config][/split], save_to_disk folder, or file")
    format: Literal["auto", "openr1", "s1k", "openthoughts", "messages"] = "auto"
    domain: Literal["math", "code", "mcq", "text"] = Field("math", description="domain of the imported problems")
    teacher: str | None = Field(None, description="teacher name on the traces (default: the set's own teacher)")
    limit: int | None = Field(None, ge=1, description="only the first N rows of the set")


# ------------------------------------------------------------------------------------------------- rl
# R1-Zero's training template (DeepSeek-AI 2025, Table 1), for base models without a chat template.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: {prompt}. "
    "Assistant:")


class RewardConfig(Config):
    name: str = Field(description="accuracy | format | language | length | overlong, a @reward name, "
                                  "module:function, or an entry point of the distill.checks group")
    weight: float = 1.0

    @field_validator("name")
    @classmethod
    def _known_reward(cls, name: str) -> str:
        """A misspelt reward must fail when the recipe is read, not after the model has loaded. `module:function`
        names are imported when training starts (the module may only exist on the training machine)."""
        if ":" in name:
            return name
        from distill.plugins import BUILTIN_REWARDS, REWARDS

        if name not in BUILTIN_REWARDS:
            try:
                REWARDS.lookup(name)
            except DistillError:
                raise ValueError(f"unknown reward '{name}'; the built-in rewards are {', '.join(BUILTIN_REWARDS)}, or give "
                                 "a @reward name, module:function, or an entry point of the distill.checks group"
                                 ) from None
        return name


class PassRateFilterConfig(Config):
    """open-r1's pass-rate filter: sample the policy k times per problem, keep those solved within the band."""

    enabled: bool = False
    k: int = Field(8, ge=2, description="samples per problem in the pre-pass")
    band: tuple[float, float] = Field((0.1, 0.9), description="keep problems whose pass rate is in [low, high]")
    max_tokens: int | None = Field(None, ge=1, description="completion budget of the pre-pass (default: max_completion_length)")


class RLConfig(TrainingMethod):
    """GRPO with rule-based rewards. Defaults: DeepSeek-R1 (2025) sec. 2.2 / Nature suppl. (beta 0.001, T 1.0,
    lr 3e-6, 16 samples a question) and TRL / DeepSeekMath (clip 0.2, group-scaled rewards)."""

    unhashed: ClassVar[frozenset[str]] = frozenset(
        {"problems", "output_dir", "logging_steps", "save_steps", "save_total_limit", "reward_workers",
         "rollout", "vllm"})
    # `selection` was renamed `pass_rate_filter` (the filter stage's `select` is another thing): runs made before
    # the rename, all with it off, keep their hash; a run that had it on starts over once.
    hashed_if_set: ClassVar[frozenset[str]] = frozenset({"pass_rate_filter"})
    retired: ClassVar[dict[str, Any]] = {"selection": {"enabled": False, "k": 8, "band": [0.1, 0.9], "max_tokens": None}}

    model: str | None = Field(None, description="policy: hub id, folder (a merged student), adapter folder or "
                                                 "bundled:NAME; in a recipe, unset = the SFT student")
    problems: Path | None = Field(None, description="Problem JSONL the policy is trained on")
    output_dir: Path | None = Field(None, description="default RUN_DIR/policy")
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    template: Literal["chat", "r1-zero"] = Field(
        "chat", description="chat: the model's chat template with prompts.templates; r1-zero: R1-Zero's plain "
                            "'User: ... Assistant:' template, answer in <answer> tags (base models)")
    rewards: list[RewardConfig] = Field(
        default_factory=lambda: [RewardConfig(name="accuracy"), RewardConfig(name="format")])
    num_generations: int = Field(16, ge=2, description="group size G (R1: 16)")
    prompts_per_step: int = Field(2, ge=1, description="distinct problems per optimizer step")
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_completion_length: int = Field(1024, ge=1, description="open-r1 GRPO demo: 1024; R1: 32768")
    temperature: float = Field(1.0, gt=0, description="R1 RL sampling temperature 1.0")
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.001, ge=0, description="KL coefficient (R1: 0.001); 0 loads no reference model")
    epsilon: float = Field(0.2, gt=0, description="clip range (DeepSeekMath / PPO 0.2)")
    epsilon_high: float | None = Field(None, gt=0, description="DAPO clip-higher, e.g. 0.28")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "grpo"
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Dr. GRPO: none")
    num_iterations: int = Field(1, ge=1, description="optimizer passes per generation batch (mu)")
    mask_truncated_completions: bool = Field(False, description="DAPO: no loss on truncated completions")
    overlong_buffer: int = Field(128, ge=0, description="DAPO soft overlong penalty: tokens before the limit "
                                                       "where the `overlong` reward ramps from 0 to -1")
    max_steps: int = Field(100, ge=1)
    learning_rate: float = Field(3e-6, gt=0, description="R1: 3e-6 (full); LoRA recipes use ~1e-5..1e-4")
    lr_scheduler: str = "constant_with_warmup"
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 = off")
    optim: str = "adamw_torch"
    gradient_checkpointing: bool = False
    rollout: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="who generates: auto picks vLLM (TRL's colocated engine on GPUs; on CPUs distill's engine "
                            "reloading the weights each step), transformers without vLLM or for QLoRA on CPUs")
    vllm: VLLMConfig = Field(default_factory=lambda: VLLMConfig(gpu_memory_utilization=0.3))
    pass_rate_filter: PassRateFilterConfig = Field(default_factory=PassRateFilterConfig)
    math_timeout_s: float = Field(5.0, gt=0, description="seconds math-verify may take on one completion")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    reward_workers: int = Field(0, ge=0, description="reward processes; 0 = all cores")
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(10, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _selection_renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "selection" in data:
            raise ValueError(f"selection={data['selection']!r}: the pass-rate pre-pass is called pass_rate_filter "
                             "now (same fields: enabled, k, band, max_tokens); rename rl.selection to "
                             "rl.pass_rate_filter")
        return data

    @model_validator(mode="after")
    def _batch_fits_groups(self) -> RLConfig:
        completions = self.prompts_per_step * self.num_generations
        if completions % self.gradient_accumulation_steps:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps}: prompts_per_step x "
                             f"num_generations = {completions} completions a step must divide evenly by it")
        low, high = self.pass_rate_filter.band
        if not 0 <= low <= high <= 1:
            raise ValueError(f"pass_rate_filter.band={list(self.pass_rate_filter.band)}: expected 0 <= low <= high "
                             "<= 1")
        return self


# ------------------------------------------------------------------------------------------------- kd
class KDConfig(TrainingMethod):
    """On-policy distillation: the student samples, the teacher scores every sampled token, the student is
    trained on the per-token reverse KL (optionally plus the verifier's rewards). Defaults and their sources:

        loss reverse_kl, estimator k1, kl_coef 1   tinker-cookbook's on-policy distillation (per-token reverse KL
                                                   as the advantage, no discounting); Qwen3's on-policy stage
        samples_per_prompt 4, prompts_per_step 4   groups of 4, as tinker-cookbook's small-scale recipes
        temperature 1.0, top_p 1.0                 sample from the student's own distribution: the KL is estimated
                                                   under it, so a reshaped sampler would bias the estimate
        learning_rate 1e-4 (LoRA)                  LoRA rates (full fine-tunes: ~1e-5 and below)
        jsd_beta 1.0                               TRL's DistillationTrainer default (reverse KL)

    Offline logit KD (the teacher's stored top-k, a forward-KL term in SFT's loss) is `sft.logit_kd`.
    """

    unhashed: ClassVar[frozenset[str]] = frozenset(
        {"problems", "output_dir", "logging_steps", "save_steps", "save_total_limit", "reward_workers",
         "micro_batch_size",  # micro-batches sum to the step's own loss: same training, other memory
         "rollout", "vllm"})  # who samples, as in rl: the same distribution from another engine
    hashed_if_set: ClassVar[frozenset[str]] = frozenset({"overlap"})  # runs made before it existed keep their keys
    # kd.offline (top_k, alpha) was read by nothing and moved to sft.logit_kd; every kd run was made with it at
    # these defaults, so they stay in the hash and those runs keep their keys.
    retired: ClassVar[dict[str, Any]] = {"offline": {"top_k": 20, "alpha": 0.5}}

    model: str | None = Field(None, description="student: hub id, folder, adapter folder or bundled:NAME; in a "
                                                 "recipe, unset = the SFT student")
    teacher: str | None = Field(None, description="teacher: hub id, folder or bundled:NAME; must share the "
                                                   "student's tokenizer")
    problems: Path | None = Field(None, description="Problem JSONL the student samples answers to")
    output_dir: Path | None = Field(None, description="default RUN_DIR/kd")
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
    micro_batch_size: int | None = Field(
        None, ge=1, description="completions per forward/backward pass; the step's loss is accumulated over them "
                                "(token-weighted, so it equals the whole step's); unset = all at once")
    max_completion_length: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_steps: int = Field(100, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    teacher_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: the student's compute precision")
    gradient_checkpointing: bool = False
    rollout: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="who samples the student's completions: auto picks distill's vLLM engine (the student's "
                            "weights reloaded each step) where vLLM is installed, transformers otherwise or for QLoRA")
    vllm: VLLMConfig = Field(default_factory=lambda: VLLMConfig(gpu_memory_utilization=0.3))
    overlap: bool = Field(
        False, description="sample the next step's completions while this step trains (vLLM rollouts only): one step "
                           "off-policy, corrected per token by the truncated importance weight min(s_now / s_sampler, "
                           "2) as verl's TIS")

    math_timeout_s: float = Field(5.0, gt=0)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    reward_workers: int = Field(0, ge=0, description="reward processes; 0 = all cores")
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(10, ge=1, description="checkpoint every N steps (a rerun resumes from the newest)")
    save_total_limit: int | None = Field(2, ge=1)
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _offline_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "offline" in data:
            raise ValueError(f"offline={data['offline']!r}: offline logit KD is part of SFT now: set sft.logit_kd "
                             "(teacher, top_k, alpha; docs/sft.md) and remove kd.offline")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> KDConfig:
        if self.rewards and self.samples_per_prompt < 2:
            raise ValueError("rewards are centred within each problem's samples: samples_per_prompt must be >= 2 "
                             "when rewards are set")
        if self.loss == "jsd" and "estimator" in self.model_fields_set:
            raise ValueError("estimator applies to loss=reverse_kl only (jsd uses the full distributions)")
        if self.overlap and self.rollout == "transformers":
            raise ValueError("overlap=true: the next step is drawn in the vLLM engine's own process while this one "
                             "trains, and rollout=transformers samples in the training process; use rollout=auto or vllm")
        return self


# --------------------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class Defaults:
    """What each stage writes when the recipe names no path of its own."""

    imported_problems: Path
    traces: Path
    filter_dir: Path
    dataset_dir: Path
    student_dir: Path
    kd_dir: Path
    policy_dir: Path
    eval_dir: Path


def defaults(run_dir: Path) -> Defaults:
    run_dir = Path(run_dir)
    return Defaults(imported_problems=run_dir / "problems.jsonl", traces=run_dir / "traces.jsonl",
                    filter_dir=run_dir / "filter", dataset_dir=run_dir / "dataset", student_dir=run_dir / "student",
                    kd_dir=run_dir / "kd", policy_dir=run_dir / "policy", eval_dir=run_dir / "eval")


def student_path(sft: SFTConfig) -> Path:
    """The folder `sft` leaves for the next stage: the full model, the merged model, or the adapter."""
    return Path(sft.output_dir) / ("model" if sft.method == "full" else "merged" if sft.merge else "adapter")


class Recipe(Config):
    """A whole run: generate -> filter -> sft -> eval inside one run directory."""

    name: str = "unnamed"
    description: str = ""
    run_dir: Path = Path("runs/unnamed")
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    import_traces: ImportConfig | None = Field(
        None, description="start from a public trace set: imported in place of generate (see docs/data.md)")
    rl: RLConfig | None = Field(None, description="GRPO after sft (rl.model unset) or instead of it (R1-Zero)")
    kd: KDConfig | None = Field(None, description="on-policy distillation from the teacher's log-probs, after sft "
                                                   "(kd.model unset) or on a given student (kd.model)")

    @model_validator(mode="after")
    def _wire_stage_paths(self) -> Recipe:
        """Fill each unset path from the run directory (distill.layout.defaults) so the stages chain."""
        where = defaults(self.run_dir)
        gen, flt, sft, ev = self.generate, self.filter, self.sft, self.eval
        if self.import_traces is not None and gen.problems is None:
            gen.problems = where.imported_problems  # the import writes the problems its traces answer here
        if gen.output is None:
            gen.output = where.traces
        if flt.input is None:
            flt.input = gen.output
        if flt.problems is None:
            flt.problems = gen.problems
        if flt.output_dir is None:
            flt.output_dir = where.filter_dir
        if sft.train_file is None:
            sft.train_file = flt.output_dir / "kept.jsonl"
        if sft.output_dir is None:
            sft.output_dir = where.student_dir
        if sft.logit_kd is not None and sft.logit_kd.teacher is None:
            if self.import_traces is not None:
                raise ValueError("sft.logit_kd.teacher=None: the recipe imports its traces, so it has no "
                                 "generation teacher to score them; name the teacher (same tokenizer as the student)")
            sft.logit_kd.teacher = gen.model  # the teacher that wrote the traces (tokenizer checked at train)
        if ev.output_dir is None:
            ev.output_dir = where.eval_dir
        explicit = set(ev.model_fields_set)  # a copy: the assignments below add to the live set
        for name in ev.from_generate:
            if name not in explicit:
                value = getattr(gen, name)
                setattr(ev, name, value.model_copy(deep=True) if isinstance(value, BaseModel) else value)
        if "sampling" not in explicit:
            ev.sampling = ev.sampling.model_copy(update={"n": ev.k})  # eval draws k samples, not the teacher's n
        for name in ev.from_filter:
            if name not in explicit:
                setattr(ev, name, getattr(flt, name))
        if self.rl is not None:
            if self.rl.output_dir is None:
                self.rl.output_dir = where.policy_dir
            if self.rl.problems is None:
                self.rl.problems = gen.problems
            if self.rl.model is None:  # RL after distillation: start from the SFT student
                self.rl.model = str(student_path(sft))
        if self.kd is not None:
            if self.kd.output_dir is None:
                self.kd.output_dir = where.kd_dir
            if self.kd.problems is None:
                self.kd.problems = gen.problems
            if self.kd.model is None:  # on-policy distillation after SFT: start from the SFT student
                self.kd.model = str(student_path(sft))
            if self.kd.teacher is None:  # the teacher that wrote the traces (same tokenizer: checked at train)
                self.kd.teacher = gen.model
        return self


def _section_class(annotation: Any) -> type[Config] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Config):
            return candidate
    return None


# A recipe's sections by name (generate, filter, sft, eval, import_traces, rl, kd), read off Recipe itself; the
# order `distill run` runs the stages in is distill.stages.PIPELINE's.
SECTIONS: dict[str, type[Config]] = {
    name: cls for name, info in Recipe.model_fields.items() if (cls := _section_class(info.annotation)) is not None}


# ------------------------------------------------------------------------------------ loading + errors
class ConfigError(DistillError):
    pass


# A check across fields (a model validator) names the field it blames as "FIELD=VALUE: why".
_CROSS_FIELD = re.compile(r"^Value error, ([A-Za-z_][\w.]*)=(.*?): (.*)$", re.DOTALL)


def _describe(error: dict[str, Any], source: str) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "<top level>"
    kind = error["type"]
    blamed = _CROSS_FIELD.match(error["msg"]) if isinstance(error.get("input"), dict) else None
    if blamed is not None:
        path = ".".join(p for p in (".".join(str(p) for p in error["loc"]), blamed[1]) if p)
        return f"{source}: field '{path}' has the bad value {blamed[2]}: {blamed[3]}."
    if kind == "extra_forbidden":
        return f"{source}: unknown field '{field}'. Remove it or check its spelling " \
               f"(`distill recipes schema` lists every field)."
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    msg = error["msg"].removeprefix("Value error, ")
    return f"{source}: field '{field}' has the bad value {shown}: {msg[0].lower()}{msg[1:]}."


def validate_config(cls: type[Config], data: dict[str, Any], source: str) -> Config:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, source) for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`sft.lora.r=32` -> (['sft','lora','r'], 32); the value is read as YAML so types come out right."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. sft.lora.r=32")
    key, _, raw = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such recipe file")
    try:
        text = read_text(path, "a recipe YAML file")
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    try:
        data = yaml.safe_load(text) or {}
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe YAML (or the defaults when `path` is None) and apply dotted overrides."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " (with overrides " + " ".join(overrides) + ")"
    return validate_config(Recipe, data, source)  # type: ignore[return-value]


def is_recipe(path: str | Path) -> bool:
    """A whole recipe (its sections, run_dir, name), as opposed to one bare stage's YAML."""
    return any(k in load_yaml(path) for k in Recipe.model_fields if k != "description")


def load_stage(stage: str, path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A stage config from a recipe file (its `stage:` section, wired through the Recipe) or a bare stage YAML."""
    if path is not None:
        data = load_yaml(path)
        if is_recipe(path):
            recipe = load_recipe(path, [f"{stage}.{o}" if "=" in o else o for o in (overrides or [])])
            section = getattr(recipe, stage)
            if section is None:
                raise ConfigError(f"{path}: the recipe has no '{stage}:' section")
            return section
    else:
        data = {}
    data = apply_overrides(data, overrides or [])
    return standalone_paths(validate_config(SECTIONS[stage], data, str(path or f"<{stage} defaults>")))


def standalone_paths(config: Config) -> Config:
    """Where a stage run on its own (no recipe, so no run directory) writes, when not told.

    A recipe wires these from its run_dir instead (Recipe._wire_stage_paths); this is the same for the CLI
    and `load_stage`, so neither has defaults of its own.
    """
    if isinstance(config, GenerateConfig) and config.output is None and config.problems is not None:
        config.output = Path(config.problems).with_name(Path(config.problems).stem + ".traces.jsonl")
    elif isinstance(config, FilterConfig) and config.output_dir is None and config.input is not None:
        config.output_dir = Path(config.input).parent / "filter"
    elif isinstance(config, SFTConfig) and config.output_dir is None:
        config.output_dir = Path("runs") / "student"
    elif isinstance(config, KDConfig) and config.output_dir is None:
        config.output_dir = Path("runs") / "kd"
    elif isinstance(config, EvalConfig) and config.output_dir is None:
        config.output_dir = Path("runs") / "eval"
    return config


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
