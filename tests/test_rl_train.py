"""GRPO steps on real tiny models: rewards rise, which parameters each method changes, resume after SIGKILL,
dry run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.config import RewardConfig, RLConfig, VLLMConfig
from distill.rl import reward, train
from distill.rl.grpo import dry_run

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "distill" / "data" / "demo" / "train.jsonl"


@reward("text_length_mod_5")
def text_length_mod_5(completion) -> float:
    """Varies across a random model's samples, so every group has a nonzero advantage and a gradient."""
    return float(len(completion.text) % 5)


@reward("opens_with_a_digit")
def opens_with_a_digit(completion) -> float:
    """SmolLM2-135M-Instruct opens its reasoning on the demo problems with a digit ('2 x 2 = 4', '1. ...') in
    about 3 of 10 samples at temperature 1: a one-token decision, partly solved, so every group has a signal."""
    return float(completion.text.lstrip()[:1].isdigit())


def tiny_config(tmp_path: Path, method: str, **overrides) -> RLConfig:
    settings = {"model": "bundled:tiny", "problems": PROBLEMS, "output_dir": tmp_path / method, "method": method,
                "num_generations": 4, "prompts_per_step": 2, "max_completion_length": 12, "max_steps": 1,
                "beta": 0.0, "learning_rate": 1e-2, "reward_workers": 1, "save_steps": 1, "rollout": "transformers",
                "rewards": [RewardConfig(name="text_length_mod_5"), RewardConfig(name="format")]}
    settings.update(overrides)
    return RLConfig(**settings)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k].float(), after[k].float())}


@pytest.mark.slow
@pytest.mark.parametrize("rollout", ["transformers", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_rewards_rise_over_a_few_steps_on_a_task_the_model_partly_solves(tmp_path, smollm2, rollout):
    """The real SmolLM2 learns to open with a digit: the untrained policy's step scores about 0.2, and a
    learning rate this high (LoRA, 2e-3) makes the last steps' mean clearly higher (measured: 1.0 from step 2).
    With vLLM rollouts (on a CPU: the engine reloading the weights each step) the rise also shows the engine
    samples from the trained weights, not the initial ones."""
    config = RLConfig(model="bundled:smollm2-135m-instruct", problems=PROBLEMS, output_dir=tmp_path / "rise",
                      method="lora", rewards=[RewardConfig(name="opens_with_a_digit")], num_generations=8,
                      prompts_per_step=2, max_completion_length=2, temperature=1.0, beta=0.0,
                      learning_rate=2e-3, lr_scheduler="constant", max_steps=4, save_steps=100,
                      reward_workers=1, merge=False, seed=0, rollout=rollout,
                      vllm=VLLMConfig(kv_cache_gib=1, max_model_len=256, enforce_eager=True))
    result = train(config, progress=False)
    rewards = [json.loads(line)["reward"] for line in result.log_path.read_text().splitlines()]
    assert len(rewards) == 4
    first, last = rewards[0], sum(rewards[-2:]) / 2
    assert 0 < first < 1, rewards  # partly solved before any update: the groups carry a signal
    assert last > first + 0.3, rewards
    assert result.metrics["rollout"] == ("transformers" if rollout == "transformers" else
                                         "vllm" if torch.cuda.is_available() else "vllm-reload")


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_full_method_changes_every_weight(tmp_path, tiny_model):
    result = train(tiny_config(tmp_path, "full"), progress=False)
    before, after = weights(Path(tiny_model)), weights(result.merged_dir)
    assert changed(before, after) == set(before)
    assert result.adapter_dir is None and result.metrics["steps"] == 1
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and "reward/text_length_mod_5" in rows[0] and "kl" not in rows[0]
    assert result.plot_path.exists()


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_adapter_methods_change_only_the_linear_layers(tmp_path, tiny_model, method):
    result = train(tiny_config(tmp_path, method), progress=False)
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in adapter.items())  # B starts at 0
    before, after = weights(Path(tiny_model)), weights(result.merged_dir)
    moved = changed(before, after)
    linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert moved and all(any(f".{name}." in k for name in linear) for k in moved)
    assert not any("embed" in k or "norm" in k for k in moved)


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_sigkill_mid_run_then_rerun_continues_the_curve(tmp_path, tiny_model):
    out = tmp_path / "lora"
    script = (
        "import sys\n"
        "from tests.test_rl_train import tiny_config\n"
        "from distill.rl import train\n"
        "if __name__ == '__main__':\n"
        "    from pathlib import Path\n"
        "    train(tiny_config(Path(sys.argv[1]), 'lora', max_steps=4), progress=False)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", script, str(tmp_path)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2 and \
                len(list((out / "checkpoints").glob("checkpoint-*/trainer_state.json"))) >= 2:
            break
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "result.json").exists()

    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] >= 2 and metrics["steps"] == 4
    elapsed = [json.loads(line)["elapsed_s"] for line in log.read_text().splitlines()]
    assert elapsed == sorted(elapsed)  # the resumed run's clock continues from the checkpoint's row


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_a_finished_run_returns_its_result_and_refuses_another_config(tmp_path, tiny_model):
    config = tiny_config(tmp_path, "lora")
    first = train(config, progress=False)
    started = time.monotonic()
    assert train(config, progress=False).metrics == first.metrics
    assert time.monotonic() - started < 5
    from distill.errors import DistillError

    (first.output_dir / "result.json").unlink()
    with pytest.raises(DistillError, match="different RL config"):
        train(tiny_config(tmp_path, "lora", learning_rate=1e-3), progress=False)


def test_dry_run_estimates_memory_without_weights(tiny_model):
    report = dry_run(RLConfig(model="bundled:tiny", method="full", beta=0.04, num_generations=8))
    assert report["step"]["completions"] == 16 and report["rollout"]["backend"] in ("transformers", "vllm", "vllm-reload")
    assert report["memory"]["breakdown_gib_one_device"]["reference_model"] > 0
    assert report["parameters"]["trainable"] == report["parameters"]["total"]
    lora = dry_run(RLConfig(model="bundled:tiny", method="lora"))
    assert lora["parameters"]["trainable"] < lora["parameters"]["total"]
    assert "reference_model" not in lora["memory"]["breakdown_gib_one_device"]
