"""What only runs on CUDA, decided on a CPU: each decision takes the machine's facts as arguments, so the GPU
machine's choice is tested here, and what the CPU can run (an SFT run, orphaned processes) runs for real."""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from test_sft_support import tiny_config

from distill.config import RLConfig, SFTConfig
from distill.errors import DistillError
from distill.sft.loss import Machine, loss_path, tiled_head
from distill.sft.memory import ModelShape, ParamCounts, estimate

GPU_WITH_LIGER = Machine(cuda=True, liger_installed=True, triton=True)


# ---- 1: liger=auto on a GPU takes TRL's tiled head, and the dry run counts what that head holds
def test_liger_auto_on_a_gpu_runs_the_loss_through_the_tiled_head():
    assert loss_path("auto", machine=GPU_WITH_LIGER) == "liger"
    # TRL 1.16 turns Liger's fused cross-entropy off; the loss must go through its tiled head, not the
    # model's own cross-entropy (the full [tokens x vocabulary] logits).
    assert tiled_head("liger") and tiled_head("trl_chunked") and not tiled_head("full_logits")
    assert loss_path("auto", machine=Machine(cuda=True, liger_installed=False, triton=True)) == "trl_chunked"
    assert loss_path("off", machine=GPU_WITH_LIGER) == "trl_chunked"
    assert loss_path("auto", machine=Machine(cuda=False, liger_installed=True, triton=False)) == "full_logits"


def test_the_dry_run_counts_one_tile_for_liger_and_the_whole_logits_only_without_a_tiled_head():
    shape = ModelShape(hidden=5120, layers=64, intermediate=27648, vocab=152064, heads=40, kv_heads=8, head_dim=128)
    counts = ParamCounts(total=32_800_000_000, trainable=130_000_000, quantizable=31_000_000_000,
                         layer_max=500_000_000)

    def head(path):
        return estimate(shape, counts, method="lora", precision="bf16", max_length=32768, per_device_batch_size=1,
                        gradient_checkpointing=True, loss_path=path)["breakdown_gib_one_device"]["lm_head"]

    assert head("liger") == head("trl_chunked") < 1.5  # one 4096 x 32768 tile and the hidden-state gradient
    assert head("full_logits") > 50  # what a 32B LoRA at 32k tokens would hold through the model's own loss


def test_the_tiled_head_path_a_gpu_takes_trains_like_the_cpu_path(tmp_path, monkeypatch):
    """The loss path liger and trl_chunked take (SFTTrainer.compute_loss with TRL's tiled head, a Python loop
    here) runs with distill's rows and collator and gives the loss the model's own cross-entropy gives."""
    import importlib

    sft_train = importlib.import_module("distill.sft.train")  # the module: distill.sft.train is also the function
    losses = {}
    for tiled in (False, True):
        monkeypatch.setattr(sft_train, "tiled_head", lambda path, tiled=tiled: tiled)
        result = sft_train.train(tiny_config(tmp_path, f"tiled-{tiled}", method="full", max_steps=1),
                                 progress=False)
        losses[tiled] = result.metrics["train_loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


# ---- 3: full_determinism's environment does not outlive training; 2: the trainer's memory does not either
def test_sft_gives_back_the_environment_and_the_trainer(tmp_path, monkeypatch):
    from distill.lifecycle import DETERMINISM_ENV
    from distill.sft import train
    from distill.sft.train import DistillTrainer

    for name in DETERMINISM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # a caller's own value comes back as it was
    before = {name: os.environ.get(name) for name in DETERMINISM_ENV}
    result = train(tiny_config(tmp_path, max_steps=2, deterministic=True, packing=True), progress=False)
    assert result.metrics["deterministic"] is True and result.metrics["packing_check"]["rows"] == 2
    assert {name: os.environ.get(name) for name in DETERMINISM_ENV} == before
    assert "CUDA_LAUNCH_BLOCKING" not in os.environ  # else eval's vLLM engine would launch synchronously
    assert not torch.are_deterministic_algorithms_enabled()
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, DistillTrainer)]  # its model and optimizer went too


# ---- 2: the teacher's engine does not stay into training on a GPU
def test_the_teacher_engine_is_stopped_before_training_on_a_gpu_only():
    from distill.stages.sft import engine_stays_for_training

    # The decision only: acting on it here would stop the suite's shared engine.
    assert engine_stays_for_training(on_gpu=True) is False
    assert engine_stays_for_training(on_gpu=False) is True  # on a CPU eval reuses it (the demo's base)


# ---- 4: QLoRA never goes to the colocated vLLM engine
def test_qlora_on_a_gpu_with_vllm_generates_with_transformers():
    from distill.rollout import choose_rollout

    qlora = RLConfig(model="bundled:tiny", method="qlora")
    chosen = choose_rollout(qlora, "bf16", on_gpu=True, has_vllm=True)
    assert chosen.backend == "transformers" and not chosen.use_vllm and not chosen.bf16_copy
    assert choose_rollout(RLConfig(model="bundled:tiny", method="lora"), "bf16", on_gpu=True, has_vllm=True).use_vllm
    with pytest.raises(DistillError, match="4-bit"):
        choose_rollout(RLConfig(model="bundled:tiny", method="qlora", rollout="vllm"), "bf16", on_gpu=True,
                       has_vllm=True)
    # Without vLLM a GPU policy decodes from a bf16 copy, not through peft's unmerged adapters or fp32 weights.
    assert choose_rollout(RLConfig(model="bundled:tiny", method="lora"), "bf16", on_gpu=True, has_vllm=False).bf16_copy


def test_the_colocated_engine_gets_a_context_the_rollouts_need():
    from distill.rl.grpo import colocated_max_model_len

    config = RLConfig(model="bundled:tiny", max_completion_length=1024)
    assert colocated_max_model_len(config, 300) == 1536  # not the model's 131k window
    assert colocated_max_model_len(RLConfig(model="bundled:tiny", vllm={"max_model_len": 4096}), 300) == 4096


# ---- 5: several GPUs and no launcher: one paragraph before any weight loads
def test_several_visible_gpus_without_a_launcher_are_refused():
    from distill.lifecycle import refuse_data_parallel

    with pytest.raises(DistillError) as refused:
        refuse_data_parallel(visible_gpus=8, world_size=1)
    message = str(refused.value)
    assert "8 GPUs" in message and "CUDA_VISIBLE_DEVICES=0" in message and "accelerate launch" in message
    assert "\n" not in message
    refuse_data_parallel(visible_gpus=8, world_size=8)  # accelerate launch: one process a GPU
    refuse_data_parallel(visible_gpus=1, world_size=1)
    refuse_data_parallel(visible_gpus=0, world_size=1)


# ---- 6: QLoRA under ZeRO-3 passes no device_map
def test_qlora_under_zero3_loads_without_a_device_map():
    from distill.sft.modeling import load_kwargs

    qlora = SFTConfig(model="bundled:tiny", method="qlora")
    assert load_kwargs(qlora, "bf16", on_gpu=True, strategy="single", local_rank=3)["device_map"] == {"": 3}
    zero3 = load_kwargs(qlora, "bf16", on_gpu=True, strategy="deepspeed", local_rank=3)
    assert "device_map" not in zero3 and "quantization_config" in zero3
    assert zero3["quantization_config"].bnb_4bit_quant_storage == torch.bfloat16  # partitions flatten alike
    assert "device_map" not in load_kwargs(qlora, "bf16", on_gpu=False)


# ---- 8: an engine left behind by a SIGKILLed parent is killed by the next engine's start
PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from distill.generation.engine import child_pids, record_engine_processes
    before = child_pids()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    record_engine_processes(before, Path(sys.argv[1]))
    print(child.pid, flush=True)
    time.sleep(120)
""")


def test_an_engine_orphaned_by_a_killed_parent_is_reaped(tmp_path):
    import psutil

    from distill.generation.engine import reap_orphaned_engines

    registry = tmp_path / "engines"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(registry)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert reap_orphaned_engines(registry) == []  # its parent lives: another run's engine is left alone
    assert psutil.pid_exists(child)
    os.kill(parent.pid, signal.SIGKILL)  # no exit hook runs
    parent.wait()
    time.sleep(0.2)
    orphan = psutil.Process(child)
    assert orphan.is_running() and orphan.status() != psutil.STATUS_ZOMBIE  # what holds a GPU after a kill -9
    assert reap_orphaned_engines(registry) == [child]
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert not list(registry.glob("*.json"))


# ---- likely slow: a full fine-tune's fp32 master weights are not what gets served
def test_a_full_fine_tune_is_saved_in_its_training_precision(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from distill.models import resolve_model
    from distill.sft.merge import save_in_precision

    model = AutoModelForCausalLM.from_pretrained(resolve_model("bundled:tiny"), dtype=torch.float32)
    model.save_pretrained(tmp_path / "model")
    fp32 = load_file(tmp_path / "model" / "model.safetensors")
    assert save_in_precision(tmp_path / "model", "bf16") == len(fp32)
    bf16 = load_file(tmp_path / "model" / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 and torch.equal(t, fp32[k].to(torch.bfloat16)) for k, t in bf16.items())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype="auto")
    assert reloaded.dtype == torch.bfloat16
    assert save_in_precision(tmp_path / "model", "fp32") == 0
