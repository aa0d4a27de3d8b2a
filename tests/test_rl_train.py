"""GRPO steps on real tiny models: which parameters each method changes, resume after SIGKILL, dry run."""
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

from distill.config import RewardConfig, RLConfig
from distill.rl import reward, train
from distill.rl.grpo import dry_run

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "distill" / "data" / "demo" / "train.jsonl"


@reward("text_length_mod_5")
def text_length_mod_5(completion) -> float:
    """Varies across a random model's samples, so every group has a nonzero advantage and a gradient."""
    return float(len(completion.text) % 5)


def tiny_config(tmp_path: Path, method: str, **overrides) -> RLConfig:
    settings = dict(model="bundled:tiny", problems=PROBLEMS, output_dir=tmp_path / method, method=method,
                    num_generations=4, prompts_per_step=2, max_completion_length=12, max_steps=1, beta=0.0,
                    learning_rate=1e-2, rewards=[RewardConfig(name="text_length_mod_5"), RewardConfig(name="format")],
                    reward_workers=1, save_steps=1)
    settings.update(overrides)
    return RLConfig(**settings)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k].float(), after[k].float())}


def test_full_method_changes_every_weight(tmp_path, tiny_model):
    result = train(tiny_config(tmp_path, "full"), progress=False)
    before, after = weights(Path(tiny_model)), weights(result.merged_dir)
    assert changed(before, after) == set(before)
    assert result.adapter_dir is None and result.metrics["steps"] == 1
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and "reward/text_length_mod_5" in rows[0] and "kl" not in rows[0]
    assert result.plot_path.exists()


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
    assert report["step"]["completions"] == 16 and report["rollout"]["backend"] in ("transformers", "vllm")
    assert report["memory"]["breakdown_gib_one_device"]["reference_model"] > 0
    assert report["parameters"]["trainable"] == report["parameters"]["total"]
    lora = dry_run(RLConfig(model="bundled:tiny", method="lora"))
    assert lora["parameters"]["trainable"] < lora["parameters"]["total"]
    assert "reference_model" not in lora["memory"]["breakdown_gib_one_device"]
