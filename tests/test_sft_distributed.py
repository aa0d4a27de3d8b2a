"""`accelerate launch` with two CPU processes: the same result as one process with the same global batch,
under DDP, DeepSpeed ZeRO-3 and FSDP2, each launched with its shipped recipes/accelerate config.

accelerate 1.16's `--cpu` flag always uses its single-process launcher (multi-CPU there means mpirun), so
the two DDP ranks are started with `--multi_gpu`, which runs torchrun; with no GPU, distill asks for a CPU
process group (gloo) and the ranks split each global batch between them. The ZeRO-3 and FSDP runs use
the shipped configs as they are, with only the process count and precision changed. On CPU ranks FSDP is
transformers' own FSDP2 at load time (accelerate shards only over GPU-type devices; distill.sft.strategy).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_sft_support import read_log, tiny_config, write_traces

from distill.sft import train

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"method": "full", "precision": "fp32", "max_steps": 3, "max_length": 384, "learning_rate": 1e-3,
          "gradient_accumulation_steps": 1}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "cache" not in p.parts}


def free_port() -> int:
    """A port no one listens on now (the OS picks it), so parallel runs and leftovers cannot collide."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: one process, the global batch of two rows in one micro-batch."""
    root = tmp_path_factory.mktemp("distributed")
    write_traces(root / "kept.jsonl", 16)
    return train(tiny_config(root, "one", per_device_batch_size=2, **COMMON), progress=False)


def launch(single, out: Path, *how: str) -> subprocess.CompletedProcess:
    """Two ranks of `distill.sft` with one row each, through `accelerate launch` and the options `how`."""
    overrides = [f"{k}={v}" for k, v in {**COMMON, "model": "bundled:tiny", "train_file": single.output_dir.parent
                                         / "kept.jsonl", "output_dir": out, "per_device_batch_size": 1,
                                         "eval_fraction": 0, "warmup_ratio": 0.0, "save_steps": 100,
                                         "merge": False}.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", *how, "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--main_process_port", str(free_port()),
                "-m", "distill.sft", *overrides, "--no-progress"]
    return subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=900, check=False, cwd=ROOT)


def assert_same_training(single, out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # Same global batch, same data order: the same curve and the same weights.
    one, two = read_log(single.log_path), read_log(out / "log.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3]  # one row per step: rank 1 logged nothing
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) < 1e-4 and a["tokens"] == b["tokens"]
    weights_one = load_file(single.merged_dir / "model.safetensors")
    weights_two = load_file(out / "model" / "model.safetensors")
    # FSDP's gathered save also writes the tied LM head; it must be the embedding it is tied to.
    assert weights_one.keys() <= weights_two.keys() and weights_two.keys() - weights_one.keys() <= {"lm_head.weight"}
    if "lm_head.weight" in weights_two.keys() - weights_one.keys():
        assert torch.equal(weights_two["lm_head.weight"], weights_two["model.embed_tokens.weight"])
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, atol=1e-5, rtol=1e-4)
    return metrics


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_two_processes_match_one_process_and_only_rank0_writes(single, tmp_path):
    ddp_dir = tmp_path / "two"
    run = launch(single, ddp_dir, "--multi_gpu", "--dynamo_backend", "no")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = assert_same_training(single, ddp_dir)
    assert metrics["strategy"] == "ddp" and metrics["packing_check"]["packed_vs_alone"] < 1e-3
    assert metrics["model_loading"] == "whole_model"
    # Rank 1 wrote nothing of its own: the two runs left the same files, except that transformers saves
    # every rank's RNG state in a checkpoint (what an exact resume of that rank needs).
    rng = {"checkpoints/checkpoint-3/rng_state_0.pth", "checkpoints/checkpoint-3/rng_state_1.pth"}
    assert _files(ddp_dir) - rng == _files(single.output_dir) - {"checkpoints/checkpoint-3/rng_state.pth"}
    assert rng <= _files(ddp_dir)


@pytest.mark.slow
def test_zero3_two_processes_match_one_process(single, tmp_path):
    out = tmp_path / "zero3"
    run = launch(single, out, "--config_file", "recipes/accelerate/zero3.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = assert_same_training(single, out)
    # It really was DeepSpeed: partitioned checkpoint, and the packing check ran on the wrapped model.
    assert metrics["strategy"] == "deepspeed"
    assert metrics["model_loading"] == "zero3_partition"  # zero.Init: no rank built the whole student
    assert (out / "checkpoints" / "checkpoint-3" / "global_step3").is_dir()
    assert metrics["packing_check"]["packed_vs_alone"] < 0.1 * metrics["packing_check"]["contaminated_vs_alone"]


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_fsdp_two_processes_match_one_process(single, tmp_path):
    out = tmp_path / "fsdp"
    run = launch(single, out, "--config_file", "recipes/accelerate/fsdp.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = assert_same_training(single, out)
    # It really was FSDP: each rank loaded only its shard, and the packing check ran on the sharded model.
    assert metrics["strategy"] == "fsdp" and metrics["model_loading"] == "fsdp_shard"
    assert metrics["packing_check"]["packed_vs_alone"] < 0.1 * metrics["packing_check"]["contaminated_vs_alone"]
    assert not list((out / "checkpoints").glob("checkpoint-*"))  # documented: no resume on this CPU path


def test_fsdp_on_cpu_ranks_refuses_adapters(monkeypatch):
    from distill.errors import DistillError
    from distill.sft.strategy import shards_at_load

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert shards_at_load("full")
    with pytest.raises(DistillError, match="full fine-tuning only"):
        shards_at_load("lora")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    assert not shards_at_load("lora")


def test_shipped_accelerate_configs_build_their_plugins():
    """What accelerate makes of fsdp.yaml and zero3.yaml: FSDP2 with full state dicts, ZeRO stage 3 with
    16-bit consolidated saves and zero.Init, as the comments in the files promise."""
    import yaml
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    fsdp = yaml.safe_load((ROOT / "recipes" / "accelerate" / "fsdp.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP"
    options = {k if k == "fsdp_version" else k.removeprefix("fsdp_"): v for k, v in fsdp["fsdp_config"].items()}
    plugin = FullyShardedDataParallelPlugin(**{k: v for k, v in options.items()
                                               if k in FullyShardedDataParallelPlugin.__dataclass_fields__})
    assert plugin.fsdp_version == 2 and plugin.cpu_ram_efficient_loading
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    zero3 = yaml.safe_load((ROOT / "recipes" / "accelerate" / "zero3.yaml").read_text())
    settings = zero3["deepspeed_config"]
    ds = DeepSpeedPlugin(zero_stage=settings["zero_stage"], zero3_init_flag=settings["zero3_init_flag"],
                         zero3_save_16bit_model=settings["zero3_save_16bit_model"],
                         offload_optimizer_device=settings["offload_optimizer_device"],
                         offload_param_device=settings["offload_param_device"])
    assert ds.zero_stage == 3 and ds.zero3_init_flag
    assert ds.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
