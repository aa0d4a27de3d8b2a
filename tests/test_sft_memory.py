"""The memory estimate counts what the loss path and, on a CPU, loading really hold (docs/scale.md has the
estimate-vs-measured table from bench/sft.py)."""
from __future__ import annotations

import pytest

from distill.config import SFTConfig
from distill.sft import dry_run
from distill.sft.memory import GIB, ModelShape, ParamCounts, estimate

SHAPE = ModelShape(hidden=576, layers=30, intermediate=1536, vocab=49152, heads=9, kv_heads=3, head_dim=64)
COUNTS = ParamCounts(total=135_000_000, trainable=4_800_000, quantizable=106_000_000, layer_max=3_500_000)


def _memory(**changes):
    settings = {"method": "lora", "precision": "bf16", "max_length": 4096, "per_device_batch_size": 1,
                "gradient_checkpointing": True, **changes}
    return estimate(SHAPE, COUNTS, **settings)


def test_full_logits_path_counts_the_whole_logits_and_their_fp32_work():
    full = _memory(loss_path="full_logits")["breakdown_gib_one_device"]["lm_head"]
    tiled = _memory(loss_path="trl_chunked")["breakdown_gib_one_device"]["lm_head"]
    hidden_grad = 4096 * 576 * 4
    # bf16 logits + fp32 upcast + saved log-softmax + its gradient: 14 bytes a logit
    assert full == pytest.approx((4096 * 49152 * 14 + hidden_grad) / GIB, abs=1e-3)
    assert tiled == pytest.approx((4096 * 32768 * 6 + hidden_grad) / GIB, abs=1e-3)


def test_cpu_loading_peak_holds_the_checkpoint_beside_the_weights():
    short = {"max_length": 128, "loss_path": "full_logits"}
    checkpoint = 540e6
    gpu = _memory(**short)
    cpu = _memory(**short, device="cpu", checkpoint_bytes=checkpoint)
    loading = cpu["breakdown_gib_one_device"]["loading_peak"]
    assert gpu["breakdown_gib_one_device"]["loading_peak"] == 0
    assert loading == pytest.approx((checkpoint + 2 * (COUNTS.total - COUNTS.trainable) + 4 * COUNTS.trainable) / GIB,
                                    abs=1e-3)
    assert cpu["per_device_gib"]["ddp"] == pytest.approx(loading, abs=1e-3)
    assert cpu["per_device_gib"]["ddp"] > gpu["per_device_gib"]["ddp"]
    qlora = _memory(**short, method="qlora", device="cpu", checkpoint_bytes=checkpoint)
    # QLoRA also stages every weight it quantizes in the compute dtype
    assert qlora["breakdown_gib_one_device"]["loading_peak"] > loading


def test_dry_run_says_which_loss_path_and_device_it_assumed(smollm2):
    report = dry_run(SFTConfig(model=smollm2, method="lora", max_length=512, per_device_batch_size=1))["memory"]
    assert report["loss_path"] == "full_logits" and report["device"] == "cpu"  # no GPU, no Triton here
    # SmolLM2's checkpoint is fp32 (0.5 GiB): the LoRA student peaks while loading, as measured (0.89 GiB)
    assert 0.89 * 0.75 < report["per_device_gib"]["ddp"] < 0.89 * 1.25
