"""SFT training on bundled:tiny: loss falls, exactly the right parameters move, resume, dry run."""
from __future__ import annotations

import json

import pytest
import torch
from test_sft_support import read_log, tiny_config, write_traces
from transformers import TrainerCallback

from distill.errors import DistillError
from distill.sft import dry_run, train


def _snapshot(model) -> dict[str, tuple[torch.Tensor, bool]]:
    # state_dict() (not named_parameters) for the values: bitsandbytes stores 4-bit weights there in
    # one canonical layout, with their quantization constants.
    values = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {name: (values.get(name, p.detach().clone()), p.requires_grad) for name, p in model.named_parameters()}


def _four_bit(model) -> set[str]:
    import bitsandbytes as bnb

    return {name for name, p in model.named_parameters() if isinstance(p, bnb.nn.Params4bit)}


class Watch(TrainerCallback):
    """Copies every parameter when training starts and ends (observes the real trainer, changes nothing)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = _snapshot(model)
        self.four_bit = _four_bit(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = _snapshot(model)

    def changed(self) -> dict[str, bool]:
        # Bytes, not values: 4-bit weights stored as bf16 hold bit patterns that read as NaN.
        def raw(t):
            return t.contiguous().flatten().view(torch.uint8)

        return {n: not torch.equal(raw(b), raw(self.after[n][0])) for n, (b, _) in self.before.items()}

    def trainable(self) -> set[str]:
        return {n for n, (_, grad) in self.before.items() if grad}


class CrashBeforeStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            raise KeyboardInterrupt(f"simulated crash before step {self.step}")


def test_lora_trains_only_adapters_and_logs_every_step(tmp_path):
    watch = Watch()
    result = train(tiny_config(tmp_path, max_steps=3, eval_fraction=0.25), progress=False, callbacks=[watch])

    changed, trainable = watch.changed(), watch.trainable()
    assert trainable and all("lora_" in n for n in trainable)
    assert all(changed[n] for n in trainable)                          # every adapter matrix moved
    assert not any(changed[n] for n in changed if n not in trainable)  # the base did not
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_config.json").exists()
    assert result.merged_dir is None  # merge=false
    rows = read_log(result.log_path)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert all({"loss", "grad_norm", "learning_rate", "tokens"} <= set(r) for r in rows if "loss" in r)
    assert any("eval_loss" in r for r in rows) and result.metrics["eval_loss"] is not None
    assert result.metrics["data"]["eval_problems"] == 6  # 25% of 24 problems, held out whole
    check = result.metrics["packing_check"]
    assert check["packed_vs_alone"] < 0.1 * check["contaminated_vs_alone"]
    assert result.plot_path.stat().st_size > 10_000


def test_full_finetune_loss_falls_and_every_parameter_moves(tmp_path):
    write_traces(tmp_path / "kept.jsonl", 4)  # four examples, seen again and again: the loss must fall
    watch = Watch()
    result = train(tiny_config(tmp_path, method="full", max_steps=8, learning_rate=3e-3), progress=False,
                   callbacks=[watch])
    losses = [row["loss"] for row in read_log(result.log_path) if "loss" in row]
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 1.0
    assert watch.trainable() == set(watch.before)
    assert all(watch.changed().values())
    assert result.merged_dir == result.output_dir / "model"
    generation = json.loads((result.merged_dir / "generation_config.json").read_text())
    stop = result.metrics["stop_token_id"]
    assert stop == generation["eos_token_id"] or stop in generation["eos_token_id"]


def test_qlora_trains_adapters_on_a_frozen_4bit_base(tmp_path):
    import bitsandbytes as bnb

    watch = Watch()
    result = train(tiny_config(tmp_path, method="qlora", max_steps=3, precision="bf16", merge=True),
                   progress=False, callbacks=[watch])
    changed, trainable = watch.changed(), watch.trainable()
    four_bit = watch.four_bit
    assert len(four_bit) == 14 and all(n not in trainable for n in four_bit)  # 7 linears x 2 layers
    assert not any(changed[n] for n in four_bit)                # NF4 base weights are untouched
    assert all(changed[n] for n in trainable)                   # every adapter moved
    assert all("lora_" in n for n in trainable)
    # The merged model is a plain full-precision checkpoint (no quantization config) that loads as such.
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert "quantization_config" not in json.loads((result.merged_dir / "config.json").read_text())


def test_resume_after_crash_continues_the_same_curve(tmp_path):
    write_traces(tmp_path / "kept.jsonl", 24)
    settings = {"max_steps": 5, "save_steps": 2, "lora": {"r": 8, "alpha": 16, "dropout": 0.1}}
    straight = train(tiny_config(tmp_path, "straight", **settings), progress=False)

    config = tiny_config(tmp_path, "crashed", **settings)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, callbacks=[CrashBeforeStep(5)])
    assert [r["step"] for r in read_log(config.output_dir / "log.jsonl")] == [1, 2, 3, 4]
    assert not (config.output_dir / "result.json").exists()
    (config.output_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").unlink()  # died mid-save

    resumed = train(config, progress=False)
    assert resumed.metrics["resumed_from_step"] == 2  # the newest *complete* checkpoint
    rows = read_log(resumed.log_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # steps 3-4 redone, not duplicated
    expected = read_log(straight.log_path)
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in expected], abs=1e-4)
    assert rows[-1]["tokens"] == expected[-1]["tokens"]

    # A finished run is not redone: the same config returns the recorded result.
    again = train(config, progress=False)
    assert again.metrics == json.loads((config.output_dir / "metrics.json").read_text())
    # A different config never resumes another's checkpoints.
    (config.output_dir / "result.json").unlink()
    with pytest.raises(DistillError, match="different SFT config"):
        train(config.model_copy(update={"learning_rate": 1e-4}), progress=False)


def test_dry_run_reports_parameters_and_memory_per_method(smollm2):
    reports = {m: dry_run(tiny_config_for(smollm2, method=m), world_size=8) for m in ("full", "lora", "qlora")}
    full, lora, qlora = reports["full"], reports["lora"], reports["qlora"]
    assert full["parameters"]["trainable"] == full["parameters"]["total"] > 130_000_000
    assert 0 < lora["parameters"]["trainable"] < 0.05 * lora["parameters"]["total"]
    assert qlora["parameters"]["nf4_quantized"] > 100_000_000
    for strategy in ("ddp", "fsdp", "zero3"):
        assert qlora["memory"]["per_device_gib"][strategy] < lora["memory"]["per_device_gib"][strategy] \
            < full["memory"]["per_device_gib"][strategy]
    assert full["memory"]["per_device_gib"]["zero3"] < full["memory"]["per_device_gib"]["ddp"]
    assert full["config"]["method"] == "full" and full["world_size"] == 8
    with pytest.raises(DistillError, match="cannot read the config"):
        dry_run(tiny_config_for("Qwen/Qwen2.5-Math-1.5B-not-in-any-cache"))


def tiny_config_for(model: str, **overrides):
    from distill.config import SFTConfig

    return SFTConfig(model=model, max_length=4096, per_device_batch_size=1, **overrides)


def test_missing_train_file_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path, train_file=tmp_path / "nope.jsonl")
    with pytest.raises(DistillError, match="nope.jsonl: no such file"):
        train(config, progress=False)


def test_qlora_gradients_are_the_same_after_an_evaluation(tiny_model, tmp_path):
    """bitsandbytes' CPU inference repacking must not leak into training (it has no autograd)."""
    from peft import get_peft_model

    from distill.sft.modeling import load_model, lora_config

    config = tiny_config(tmp_path, method="qlora")
    model = get_peft_model(load_model(tiny_model, config, "bf16"), lora_config(config))
    ids = torch.randint(3, 40000, (2, 48), generator=torch.Generator().manual_seed(0))

    def grads():
        model.train()
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    before = grads()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids[:, :5])  # what an evaluation (or the packing check) does
    after = grads()
    assert before.keys() == after.keys() and len(before) == 28
    for name in before:
        torch.testing.assert_close(after[name], before[name], atol=0, rtol=0)


class SeeArgs(TrainerCallback):
    """Records the optimizer, scheduler and attention the real trainer ended up with."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self.optimizer = type(getattr(optimizer, "optimizer", optimizer)).__name__  # under accelerate's wrapper
        self.attention = model.config._attn_implementation

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        self.last_lr = lr_scheduler.get_last_lr()[0]


def test_optimizer_scheduler_attention_and_checkpoint_limit_come_from_the_config(tmp_path, smollm2):
    seen = SeeArgs()
    config = tiny_config(tmp_path, max_steps=4, save_steps=1, save_total_limit=1, optim="sgd",
                         lr_scheduler="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.5},
                         attn_implementation="eager")
    result = train(config, progress=False, callbacks=[seen])
    assert seen.optimizer == "SGD" and seen.attention == "eager"
    assert result.metrics["attn_implementation"] == "eager"
    # cosine_with_min_lr ends at min_lr_rate x the peak learning rate, not at zero.
    assert seen.last_lr == pytest.approx(0.5 * config.learning_rate, rel=1e-3)
    assert [p.name for p in (config.output_dir / "checkpoints").glob("checkpoint-*")] == ["checkpoint-4"]
    # Only the optimizer's state size changes the dry-run estimate: 8-bit Adam keeps a quarter of Adam's.
    def optimizer_gib(optim: str) -> float:
        report = dry_run(tiny_config_for(smollm2, method="full", optim=optim))
        return report["memory"]["breakdown_gib_one_device"]["optimizer"]

    assert optimizer_gib("adamw_torch") > 0.9  # 135M parameters x 8 bytes
    assert optimizer_gib("adamw_8bit") == pytest.approx(optimizer_gib("adamw_torch") / 4, rel=0.01)


def test_same_seed_same_machine_gives_bitwise_identical_weights(tmp_path):
    """Twice the same training, the second from the kept traces in another order (a teacher finishes its
    requests in a different order on every run) and after other random draws in the process: same bytes."""
    settings = {"max_steps": 4, "eval_fraction": 0.25, "lora": {"r": 8, "alpha": 16, "dropout": 0.1}}
    first = train(tiny_config(tmp_path, "first", **settings), progress=False)
    lines = (tmp_path / "kept.jsonl").read_text().splitlines(keepends=True)
    shuffled = tmp_path / "shuffled" / "kept.jsonl"
    shuffled.parent.mkdir()
    shuffled.write_text("".join(reversed(lines)))
    torch.rand(1000)  # the process's random state moved on, as after generation in `distill run`
    second = train(tiny_config(tmp_path, "second", train_file=shuffled, **settings), progress=False)

    weights = sorted(p.name for p in first.adapter_dir.iterdir() if p.suffix == ".safetensors")
    assert weights
    for name in weights:
        assert (first.adapter_dir / name).read_bytes() == (second.adapter_dir / name).read_bytes(), name
    assert first.metrics["train_loss"] == second.metrics["train_loss"]
    assert first.metrics["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()  # handed back to the caller after training
