"""How much memory a device needs to fine-tune a student: model states + activations + the LM head's work.

A planning estimate, not a measurement (bench/sft.py puts the two side by side). Bytes per parameter:

    full   fp32 master weights 4 + grads 4 + AdamW moments 8 (+2 for the bf16/fp16 copy autocast keeps)
    lora   frozen base in the compute dtype (2, or 4 in fp32) + 16 per trainable adapter parameter
    qlora  NF4 base: 0.5 + quantization constants (double-quantized: ~0.016; else 4/64), the layers bitsandbytes
           leaves unquantized (embeddings, norms) in the compute dtype, + 16 per trainable parameter

FSDP and ZeRO-3 shard weights, grads and optimizer states over the world size (one layer is gathered at a
time); DDP replicates them. Activations assume fused/flash attention (memory linear in the sequence length);
with gradient checkpointing each layer keeps only its input and one layer is recomputed at a time.

The LM head is counted the way the loss path computes it (`distill.sft.loss`): the tiled paths (TRL's
chunked head, Liger) hold one 4096-token x 32768-vocabulary tile; the model's own cross-entropy (the CPU
path) holds the whole [tokens x vocabulary] logits, their fp32 upcast, the log-softmax kept for backward
and its gradient. On a CPU the device memory is the process's RAM, which also holds the checkpoint while
it is read (safetensors maps the file) beside the weights being built from it: a LoRA or QLoRA student
small enough to train in little memory peaks while loading, so the estimate is the larger of the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024 ** 3
STRATEGIES = ("ddp", "fsdp", "zero3")


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config) -> ModelShape:
        config = config.get_text_config()
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(hidden=config.hidden_size, layers=config.num_hidden_layers,
                   intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
                   vocab=config.vocab_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim)


@dataclass(frozen=True)
class ParamCounts:
    total: int
    trainable: int
    quantizable: int      # linear weights inside the decoder layers (what NF4 quantizes)
    layer_max: int        # the largest decoder layer (what FSDP/ZeRO-3 gathers at once)


def _act_bytes(precision: str) -> int:
    return 2 if precision in ("bf16", "fp16") else 4


def optimizer_bytes_per_param(optim: str) -> float:
    """Adam keeps two fp32 moments (8 B); 8-bit variants two 1-byte moments; plain SGD and Adafactor ~none."""
    name = optim.lower()
    if "8bit" in name:
        return 2.0
    if name.startswith(("sgd", "adafactor")):
        return 0.0
    return 8.0


def model_state_bytes(params: ParamCounts, method: str, precision: str, double_quant: bool = True,
                      optim: str = "adamw_torch") -> dict[str, float]:
    a = _act_bytes(precision)
    moments = optimizer_bytes_per_param(optim)
    if method == "full":
        return {"weights": 4.0 * params.total, "gradients": 4.0 * params.total,
                "optimizer": moments * params.total, "autocast_copies": (2.0 * params.total if a == 2 else 0.0)}
    trainable = params.trainable
    if method == "lora":
        base = a * (params.total - trainable)
    else:  # qlora
        constants = (1 / 64 + 4 / (64 * 256)) if double_quant else 4 / 64
        rest = params.total - trainable - params.quantizable
        base = (0.5 + constants) * params.quantizable + a * rest
    return {"weights": base + 4.0 * trainable, "gradients": 4.0 * trainable, "optimizer": moments * trainable,
            "autocast_copies": 0.0}


def activation_bytes(shape: ModelShape, tokens: int, precision: str, gradient_checkpointing: bool,
                     loss_path: str = "trl_chunked") -> dict[str, float]:
    a = _act_bytes(precision)
    kv = shape.kv_heads * shape.head_dim
    # Saved per token by one decoder layer for backward: norms, q/k/v (+ rotated q/k), attention output,
    # o-proj input, the MLP's gate/up/activation/product, and the residual stream.
    per_layer = (7 * shape.hidden + 3 * kv + 4 * shape.intermediate) * a
    if gradient_checkpointing:
        layers = shape.layers * shape.hidden * a * tokens + per_layer * tokens
    else:
        layers = shape.layers * per_layer * tokens
    hidden_grad = tokens * shape.hidden * 4  # the fp32 gradient flowing back into the last hidden state
    if loss_path == "full_logits":
        # logits in the compute dtype, their fp32 upcast (none in fp32), the saved log-softmax, its gradient
        per_logit = (a + 4 if a == 2 else 4) + 4 + 4
        head = tokens * shape.vocab * per_logit + hidden_grad
    else:
        tile_tokens, tile_vocab = min(tokens, 4096), min(shape.vocab, 32768)
        # One projection tile in the compute dtype plus its fp32 softmax work.
        head = tile_tokens * tile_vocab * (a + 4) + hidden_grad
    return {"activations": float(layers), "lm_head": float(head)}


def loading_bytes(states: dict[str, float], checkpoint_bytes: float, device: str, method: str,
                  quantized_params: int, precision: str) -> float:
    """RAM while from_pretrained runs on a CPU: the mapped checkpoint beside the weights built from it.

    QLoRA also holds a compute-dtype copy of every weight it quantizes (bitsandbytes quantizes from that
    copy; measured on SmolLM2-135M, the loading peak keeps them all)."""
    if device != "cpu":
        return 0.0
    staging = _act_bytes(precision) * quantized_params if method == "qlora" else 0.0
    return checkpoint_bytes + staging + states["weights"]


def estimate(shape: ModelShape, params: ParamCounts, *, method: str, precision: str, max_length: int,
             per_device_batch_size: int, gradient_checkpointing: bool, world_size: int = 1,
             double_quant: bool = True, optim: str = "adamw_torch", loss_path: str = "trl_chunked",
             device: str = "gpu", checkpoint_bytes: float = 0.0) -> dict[str, Any]:
    """Per-device GiB for each strategy (the larger of training and, on a CPU, loading), with the breakdown."""
    states = model_state_bytes(params, method, precision, double_quant, optim)
    acts = activation_bytes(shape, per_device_batch_size * max_length, precision, gradient_checkpointing,
                            loss_path)
    loading = loading_bytes(states, checkpoint_bytes, device, method, params.quantizable, precision)
    a = _act_bytes(precision)
    per_device: dict[str, float] = {}
    for strategy in STRATEGIES:
        if strategy == "ddp" or world_size == 1:
            sharded = sum(states.values())
        else:
            # Sharded states, plus one gathered layer (weights in the compute dtype) and its gradient.
            shard = (states["weights"] + states["gradients"] + states["optimizer"]) / world_size
            sharded = shard + states["autocast_copies"] / world_size + 2 * a * params.layer_max
        per_device[strategy] = round(max(sharded + sum(acts.values()), loading) / GIB, 3)
    breakdown = {k: round(v / GIB, 3) for k, v in {**states, **acts, "loading_peak": loading}.items()}
    return {"per_device_gib": per_device, "breakdown_gib_one_device": breakdown,
            "tokens_per_device_step": per_device_batch_size * max_length, "loss_path": loss_path,
            "device": device,
            "assumes": "fused/flash attention; no framework overhead (CUDA context ~0.5-1 GiB, "
                       "allocator fragmentation ~10%)"}
