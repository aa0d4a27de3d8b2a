"""On-policy distillation on real tiny models: the teacher's scores, the tokenizer check, the training loop
(the KL to the teacher falls), SIGKILL and resume, and the config's errors."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from processes import kill_when

from distill.config import ConfigError, validate_config
from distill.errors import DistillError
from distill.kd import KDConfig, train
from distill.kd.losses import policy_gradient_loss, reverse_kl_advantage, token_logprobs, topk_forward_kl
from distill.kd.teacher import Teacher, check_tokenizers

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "distill" / "data" / "demo" / "train.jsonl"


def perturbed_copy(source: str, target: Path, noise: float, seed: int = 1) -> str:
    """The tiny model with gaussian noise on its transformer layers: a student that starts away from its teacher."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".layers." in name:
                param.add_(torch.randn_like(param) * noise)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return str(target)


@pytest.fixture(scope="module")
def tokenizer_tiny(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def student_dir(tiny_model, tmp_path_factory) -> str:
    return perturbed_copy(tiny_model, tmp_path_factory.mktemp("student"), noise=0.05)


def kd_config(student: str, teacher: str, out: Path, **overrides) -> KDConfig:
    settings = {"model": student, "teacher": teacher, "problems": PROBLEMS, "output_dir": out, "method": "full",
                "precision": "fp32", "max_steps": 5, "prompts_per_step": 4, "samples_per_prompt": 2,
                "max_completion_length": 8, "learning_rate": 3e-3, "save_steps": 1, "save_total_limit": None,
                "rollout": "transformers"}  # seeded per step: a resumed run retraces; the engine has its own test
    return KDConfig(**{**settings, **overrides})


# ------------------------------------------------------------------------------------------ teacher
def test_teacher_scores_each_token_as_a_plain_forward_does(tiny_model, tokenizer_tiny):
    """Left-padded batch scoring gives each row the log-probs its own unpadded forward gives."""
    teacher = Teacher.load(tiny_model, torch.float32)
    texts = ["Add 3 and 39.", "What is six times eight, in words?"]
    tokenizer_tiny.padding_side = "left"
    batch = tokenizer_tiny(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    keep = 3
    scored = teacher.score(batch["input_ids"], batch["attention_mask"], keep)
    for row, text in enumerate(texts):
        ids = tokenizer_tiny(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = teacher.model(input_ids=ids).logits[0, -keep - 1:-1]
        assert torch.allclose(scored[row], token_logprobs(logits, ids[0, -keep:]), atol=1e-5)
    ids, values = teacher.topk(batch["input_ids"], batch["attention_mask"], keep, k=5)
    assert ids.shape == values.shape == (2, keep, 5)
    assert torch.all(values[..., :-1] >= values[..., 1:])


def test_teacher_equal_to_student_gives_zero_loss_and_gradient(tiny_model, tokenizer_tiny):
    from transformers import AutoModelForCausalLM

    teacher = Teacher.load(tiny_model, torch.float32)
    student = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids = tokenizer_tiny("Multiply 2 by 2. The answer is 4.", return_tensors="pt", add_special_tokens=False)["input_ids"]
    mask = torch.ones_like(ids)
    keep = ids.shape[1] - 1
    logits = student(input_ids=ids, logits_to_keep=keep + 1).logits[:, :-1]
    s_lp = token_logprobs(logits, ids[:, -keep:])
    for estimator in ("k1", "k3"):
        advantage = reverse_kl_advantage(s_lp, teacher.score(ids, mask, keep), estimator=estimator)
        assert advantage.abs().max() < 1e-5
        student.zero_grad()
        loss = policy_gradient_loss(s_lp, advantage, mask[:, -keep:])
        loss.backward(retain_graph=True)
        assert abs(loss.item()) < 1e-5
        assert max(p.grad.abs().max().item() for p in student.parameters() if p.grad is not None) < 1e-5


# --------------------------------------------------------------------------------------- tokenizers
def swapped_vocabulary(source: str, target: Path) -> str:
    """The tiny model's tokenizer with two ids swapped, and a weights file that is not one: a teacher that must
    be refused from its tokenizer alone (loading its weights would fail differently)."""
    shutil.copytree(source, target)
    data = json.loads((target / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["Ġthe"], vocab["Ġand"] = vocab["Ġand"], vocab["Ġthe"]
    (target / "tokenizer.json").write_text(json.dumps(data))
    (target / "model.safetensors").write_bytes(b"not weights")
    return str(target)


def test_tokenizer_mismatch_stops_before_weights_load(tiny_model, student_dir, tmp_path):
    check_tokenizers(tiny_model, student_dir)  # same tokenizer: silent
    teacher = swapped_vocabulary(tiny_model, tmp_path / "teacher")
    with pytest.raises(DistillError) as info:
        train(kd_config(student_dir, teacher, tmp_path / "out"))
    message = str(info.value)
    assert "do not share a tokenizer" in message and "\n" not in message
    assert "token id 260 is 'Ġand' for the teacher and 'Ġthe' for the student" in message
    assert teacher in message and student_dir in message
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_tokenizer_with_extra_tokens_is_refused(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    grown = tmp_path / "grown"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>"]})
    tokenizer.save_pretrained(grown)
    with pytest.raises(DistillError, match=r"token id 49152 is None for the teacher and '<start_of_turn>'"):
        check_tokenizers(tiny_model, str(grown))


# ------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("values,expected", [
    ({"jsd_beta": 1.5}, "field 'jsd_beta' has the bad value 1.5"),
    ({"estimator": "k2"}, "field 'estimator' has the bad value 'k2'"),
    ({"kl_coef": 0}, "field 'kl_coef' has the bad value 0"),
    ({"offline": {"alpha": 0.1}}, "offline logit KD is part of SFT now: set sft.logit_kd"),
    ({"samples_per_prompt": 1, "rewards": [{"name": "accuracy"}]}, "samples_per_prompt must be >= 2"),
    ({"loss": "jsd", "estimator": "k3"}, "estimator applies to loss=reverse_kl only"),
    ({"temprature": 0.7}, "unknown field 'temprature'"),
    ({"overlap": True, "rollout": "transformers"}, "rollout=transformers samples in the training process; use rollout=auto or vllm"),
])
def test_bad_kd_values_give_one_line_errors(values, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(KDConfig, values, "recipe.yaml")
    assert expected in str(info.value) and str(info.value).startswith("recipe.yaml: ")


# ----------------------------------------------------------------------------------- training loop
@pytest.fixture(scope="module")
def reference_run(tiny_model, student_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("kd") / "run"
    return train(kd_config(student_dir, tiny_model, out), progress=False)


def test_kl_to_the_teacher_falls(reference_run):
    rows = [json.loads(line) for line in reference_run.log_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    exact = [r["kl_exact"] for r in rows]
    assert sum(exact[-2:]) / 2 < 0.85 * exact[0], exact
    assert exact[-1] == min(exact), exact
    assert reference_run.metrics["resumed_from_step"] == 0 and reference_run.metrics["tokens_per_s"] > 0
    assert (reference_run.output_dir / "model" / "config.json").exists()
    assert reference_run.plot_path.exists()


def test_sigkill_mid_run_then_rerun_continues_without_repeating_steps(reference_run, tiny_model, student_dir,
                                                                       tmp_path):
    out = tmp_path / "run"
    config = kd_config(student_dir, tiny_model, out)
    script = ("import sys; from distill.kd import KDConfig, train; "
              "train(KDConfig.model_validate_json(sys.argv[1]), progress=False)")
    checkpoint = out / "checkpoints" / "checkpoint-2" / "state.json"
    kill_when([sys.executable, "-c", script, config.model_dump_json()], checkpoint.exists, tmp_path / "killed.log",
              point="checkpoint 2")

    result = train(config, progress=False)
    resumed = result.metrics["resumed_from_step"]
    assert 2 <= resumed < 5
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    # Samples are drawn per (seed, step) and the checkpoint holds weights, optimizer and schedule: the resumed
    # run retraces the uninterrupted one.
    reference = [json.loads(line) for line in reference_run.log_path.read_text().splitlines()]
    assert [r["kl_exact"] for r in rows] == pytest.approx([r["kl_exact"] for r in reference], rel=1e-4)
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in reference]


def test_micro_batches_train_as_the_whole_step_does(reference_run, tiny_model, student_dir, tmp_path):
    """8 completions a step in micro-batches of 3, 3 and 2: the token-weighted sum is the step's own loss, so
    the run retraces the one-pass reference while holding a third of the logits."""
    micro = train(kd_config(student_dir, tiny_model, tmp_path / "micro", micro_batch_size=3), progress=False)
    rows = [json.loads(line) for line in micro.log_path.read_text().splitlines()]
    reference = [json.loads(line) for line in reference_run.log_path.read_text().splitlines()]
    for name in ("loss", "kl", "kl_exact", "grad_norm"):
        assert [r[name] for r in rows] == pytest.approx([r[name] for r in reference], rel=1e-4, abs=1e-6), name
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in reference]


def test_finished_run_returns_its_result_and_other_config_is_refused(reference_run, tiny_model, student_dir):
    again = train(kd_config(student_dir, tiny_model, reference_run.output_dir), progress=False)
    assert again.metrics == reference_run.metrics
    (reference_run.output_dir / "result.json").unlink()
    (reference_run.output_dir / "trained.json").unlink()
    with pytest.raises(DistillError, match="checkpoints of a different kd config"):
        train(kd_config(student_dir, tiny_model, reference_run.output_dir, learning_rate=1e-3), progress=False)


# ----------------------------------------------------------------------------------------- offline KD
def test_offline_topk_store_scores_the_tokens_sft_trains_on(tiny_model, student_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.kd.offline import example_loss, store_topk, tokenized
    from distill.records import Trace

    traces = tmp_path / "kept.jsonl"
    rows = [Trace(problem_id=f"p{i}", sample=0, teacher="t", prompt=[{"role": "user", "content": q}],
                  completion="", reasoning=r, answer=a)
            for i, (q, r, a) in enumerate([("Add 3 and 39.", "3 + 39 = 42.", "\\boxed{42}"),
                                           ("What is 6 times 8?", "Six eights are 48.", "The answer is \\boxed{48}.")])]
    traces.write_text("".join(t.model_dump_json() + "\n" for t in rows))
    stats = store_topk(traces, tiny_model, k=16, out=tmp_path / "topk")
    assert stats["bytes_per_token"] == 16 * 4 and stats["bytes"] == stats["tokens"] * 64 > 0

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    for key, example in tokenized(traces, tokenizer):
        ids = torch.tensor([example["input_ids"]])
        supervised = (torch.tensor(example["labels"][1:]) != -100).nonzero().squeeze(-1)
        with torch.no_grad():
            t_logits, s_logits = teacher(input_ids=ids).logits[0], student(input_ids=ids).logits[0]
        # The teacher against its own stored top-k: zero up to the float16 storage.
        assert abs(example_loss(t_logits, example, tmp_path / "topk", key, alpha=1.0).item()) < 1e-5
        # The student: the same value as from the teacher's top-k kept in float32 memory.
        values, top = torch.log_softmax(t_logits[:-1][supervised], -1).topk(16, dim=-1)
        expected = topk_forward_kl(s_logits[:-1][supervised], top, values).mean()
        stored = example_loss(s_logits, example, tmp_path / "topk", key, alpha=1.0)
        assert stored.item() == pytest.approx(expected.item(), rel=1e-2) and expected.item() > 1e-5


# ------------------------------------------------------------------------------------- vLLM rollouts
def test_engine_draws_become_the_batch_generate_would_make(tokenizer_tiny):
    """Prompts left-padded, completions right-padded, the mask up to and including the first stop token; a row
    cut by the length limit is masked by its length even where the padding is the stop token's own id."""
    from distill.kd.sampling import batch_of

    stop = tokenizer_tiny.eos_token_id
    prompts = [[11, 12, 13], [21]]
    drawn = [([5, stop, 7], [-0.5, -0.1, -2.0]), ([6, 8], [-1.0, -3.0])]  # row 0 stopped, row 1 was cut
    input_ids, attention_mask, mask, logprobs = batch_of(prompts, drawn, pad_id=stop, stop_ids=[stop])
    assert input_ids.tolist() == [[11, 12, 13, 5, stop, 7], [stop, stop, 21, 6, 8, stop]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 0]]
    assert logprobs.flatten().tolist() == pytest.approx([-0.5, -0.1, -2.0, -1.0, -3.0, 0.0])


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_rollouts_overlapping_the_update_train_the_student(tiny_model, student_dir, tmp_path):
    """The student samples in distill's vLLM engine, its weights reloaded each step, and the next step's draw runs
    while this step trains. Each token keeps the engine's log-prob: the first batch is on-policy (weight 1 up to the
    engine's bf16), the later ones one update stale (weights near 1, truncated at 2); the KL falls as on the
    transformers path."""
    from distill.config import VLLMConfig

    config = kd_config(student_dir, tiny_model, tmp_path / "kd", rollout="vllm", overlap=True,
                       vllm=VLLMConfig(kv_cache_gib=1, max_model_len=512, enforce_eager=True), max_steps=7)
    result = train(config, progress=False)
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert result.metrics["rollout"] == "vllm-reload" and result.metrics["overlap"] is True
    # Seven steps, not the transformers path's five: each draw is one update behind, so the fall starts a step later.
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[0]["is_weight"] == pytest.approx(1.0, abs=0.05)
    assert all(0.5 < r["is_weight"] <= 2.0 for r in rows), [r["is_weight"] for r in rows]
    exact = [r["kl_exact"] for r in rows]
    assert sum(exact[-2:]) / 2 < 0.85 * exact[0], exact
    assert result.metrics["rollout_sync_s"] > 0
    if not torch.cuda.is_available():  # the engine computes on its cores, the trainer beside it on the others
        cores = result.metrics["engine_cores"]
        assert cores["worker"] and cores["trainer"] and not set(cores["worker"]) & set(cores["trainer"])


# -------------------------------------------------------------------------------------------- recipes
KD_RECIPES = sorted((ROOT / "distill" / "recipes" / "kd").glob("*.yaml"))


@pytest.mark.parametrize("path", KD_RECIPES, ids=lambda p: p.stem)
def test_kd_recipes_validate_and_run_a_step_with_the_models_overridden(path, tiny_model, tmp_path):
    """Each recipe's kd: section is a valid KDConfig, headed by its launch command; with the tiny model as
    student and teacher it runs a step on the CPU."""
    import yaml

    text = path.read_text()
    assert f"distill run recipes/kd/{path.name}" in text and "# Hardware:" in text
    section = yaml.safe_load(text)["kd"]
    config = validate_config(KDConfig, section, str(path))
    small = config.model_copy(update={
        "model": tiny_model, "teacher": tiny_model, "problems": PROBLEMS, "output_dir": tmp_path / "kd",
        "max_steps": 1, "prompts_per_step": 1, "samples_per_prompt": 2, "max_completion_length": 8,
        "precision": "fp32", "gradient_checkpointing": False, "rollout": "transformers"})
    result = train(small, progress=False)
    assert result.metrics["steps"] == 1 and result.policy.exists()


def test_dry_run_counts_the_teacher_without_loading_weights(tiny_model, tmp_path):
    from distill.kd import dry_run

    teacher = swapped_vocabulary(tiny_model, tmp_path / "teacher")   # its weights file is not one: never read
    report = dry_run(KDConfig(model=tiny_model, teacher=teacher, method="full", precision="fp32",
                              prompts_per_step=2, samples_per_prompt=2, max_completion_length=32))
    breakdown = report["memory"]["breakdown_gib_one_device"]
    assert report["parameters"]["teacher"] == report["parameters"]["total"]
    assert breakdown["teacher_weights"] > 0 and breakdown["teacher_logits"] > 0
    assert report["memory"]["per_device_gib"]["ddp"] > sum(breakdown[k] for k in ("weights", "teacher_weights"))
    halves = dry_run(KDConfig(model=tiny_model, teacher=teacher, method="full", precision="fp32", prompts_per_step=2,
                              samples_per_prompt=2, max_completion_length=32, micro_batch_size=2))
    # One micro-batch's logits at a time (the figures are rounded to MiB).
    assert halves["memory"]["breakdown_gib_one_device"]["teacher_logits"] == pytest.approx(
        breakdown["teacher_logits"] / 2, abs=1e-3)
    assert halves["memory"]["per_device_gib"]["ddp"] < report["memory"]["per_device_gib"]["ddp"]


def test_jsd_loss_trains_the_student(tiny_model, student_dir, tmp_path):
    result = train(kd_config(student_dir, tiny_model, tmp_path / "kd", max_steps=1, loss="jsd", jsd_beta=0.5),
                   progress=False)
    (row,) = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert row["kl_exact"] > 0 and row["grad_norm"] > 0 and row["loss"] > 0
