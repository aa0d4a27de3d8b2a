"""`distill plan` on every shipped student recipe: it finishes offline, every number is positive, and
bigger students cost more in parameters, FLOPs, GPU-hours and memory."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from distill.config import load_recipe
from distill.plan import plan

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = sorted((ROOT / "recipes" / "students").glob("*.yaml"))
TEACHER = {"teacher": "deepseek-ai/DeepSeek-R1", "traces": 800_000, "mean_tokens": 8000.0, "keep_rate": 0.6}


@pytest.fixture(scope="module")
def plans() -> dict[str, dict]:
    return {path.stem: plan(load_recipe(path), **TEACHER) for path in STUDENTS}


def _numbers(node, where=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, f"{where}.{key}")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield where, node


def test_every_student_recipe_plans_with_positive_numbers(plans):
    assert len(plans) == len(STUDENTS) >= 17
    for name, result in plans.items():
        for where, value in _numbers(result):
            assert value > 0, f"{name}{where} = {value}"
        assert result["sft"]["min_gpus"] >= 1, name
        # the same generation plan for every student: it depends on the teacher and traces only
        assert result["generation"] == plans[STUDENTS[0].stem]["generation"]


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_plans_are_ordered_by_student_size(plans, method):
    # The -openr1- recipes train the same students on a public trace set: one row per student size.
    rows = sorted((r["sft"] for name, r in plans.items() if name.endswith(f"-{method}") and "-openr1-" not in name),
                  key=lambda s: s["params_b"])
    assert len(rows) >= 4
    for small, big in itertools.pairwise(rows):
        assert small["params_b"] < big["params_b"]
        assert small["flops"] / small["epochs"] < big["flops"] / big["epochs"]
        assert small["memory_per_device_gib"]["world_1"]["ddp"] < big["memory_per_device_gib"]["world_1"]["ddp"]
        assert small["min_gpus"] <= big["min_gpus"]


def test_methods_order_memory_and_the_7b_worked_example(plans):
    one = {m: plans[f"qwen2.5-math-7b-{m}"]["sft"] for m in ("full", "lora", "qlora")}
    memory = {m: s["memory_per_device_gib"]["world_1"]["ddp"] for m, s in one.items()}
    assert memory["qlora"] < memory["lora"] < memory["full"]
    assert one["full"]["min_gpus_by_strategy"]["ddp"] is None  # a full 7B fine-tune does not fit one H100
    assert one["lora"]["min_gpus"] == 1
    # 800k traces x 8k tokens x 3 epochs through 7.6B parameters at 8 FLOPs a parameter-token
    assert one["full"]["flops"] == pytest.approx(8 * 7.6156e9 * 800_000 * 8000 * 3, rel=1e-3)


def test_cli_plan_prints_json(tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app

    result = CliRunner().invoke(app, ["plan", str(STUDENTS[0]), "--json", "--gpu", "h200",
                                      "--teacher", "deepseek-ai/DeepSeek-R1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gpu"] == "h200" and data["generation"]["gpus_per_replica"] == 8


def test_a_student_recipe_plans_offline_with_its_own_teacher():
    """The recipes' teacher, R1-Distill-Qwen-32B, is counted from the shipped config of Qwen2.5-32B, the model
    it was fine-tuned from: no download, no --teacher."""
    recipe = load_recipe(ROOT / "recipes/students/qwen2.5-math-7b-full.yaml")
    assert recipe.generate.model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    generation = plan(recipe, traces=800_000, mean_tokens=8000.0, keep_rate=0.6)["generation"]
    assert generation["teacher_params_b"] == pytest.approx(32.76, abs=0.05)


def test_plan_prints_no_bitsandbytes_kernel_notice():
    """bitsandbytes announces at import that its optional CPU inference kernel is missing; distill never uses
    that kernel, so the notice is dropped at its logger (distill.sft) and the plan's output is the plan."""
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "distill.cli", "plan", str(ROOT / "recipes/students/llama-3.1-8b-qlora.yaml"),
                          "--teacher", "deepseek-ai/DeepSeek-R1", "--json"], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "gemm_4bit_forward" not in run.stderr + run.stdout
    assert json.loads(run.stdout)["sft"]["method"] == "qlora"


def test_the_kernel_notice_filter_lets_every_other_record_through(caplog):
    import logging

    import distill.sft  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "No module named 'kernels'")
        logger.warning("a real bitsandbytes problem")
    assert [r.getMessage() for r in caplog.records] == ["a real bitsandbytes problem"]


def test_the_gpu_peak_comes_from_the_table_with_its_source(plans):
    from distill.gpus import GPUS

    result = plans["qwen2.5-math-7b-full"]
    assert result["gpu_peak"]["bf16_tflops"] == GPUS["h100"].bf16_tflops
    assert "datasheet" in result["gpu_peak"]["source"]
    assert all(g.bf16_tflops > 0 and g.source for g in GPUS.values())
    assert {"h100", "h200", "a100", "l40s"} <= set(GPUS)


def test_sft_utilisation_is_the_gpu_checks_where_it_measured_one(tmp_path):
    from distill.gpus import gpu_for_device, measured_sft_utilisation

    assert gpu_for_device("NVIDIA H200").name == "h200"
    assert gpu_for_device("NVIDIA H100 80GB HBM3").name == "h100"
    assert gpu_for_device("NVIDIA H100 PCIe").name == "h100-pcie"
    assert gpu_for_device("Tesla T4") is None
    results = tmp_path / "gpu.json"
    results.write_text(json.dumps({"runs": [
        {"rehearse": False, "started": "then", "parts": {"peak": {"device": "NVIDIA H200"}},
         "verdict": {"sft_full_mfu": 0.31}},
        {"rehearse": True, "parts": {"peak": {"device": "NVIDIA H200"}}, "verdict": {"sft_full_mfu": 0.9}}]}))
    value, source = measured_sft_utilisation("h200", results)
    assert value == 0.31 and "NVIDIA H200" in source  # the rehearsal (a CPU) never counts
    assert measured_sft_utilisation("h100", results) is None
    assert measured_sft_utilisation("h200", tmp_path / "missing.json") is None


def test_a_recipe_that_imports_traces_plans_no_teacher_run():
    """An OpenR1 recipe starts from published traces: the teacher already ran, so generation costs nothing;
    naming a teacher still plans one (what generating the set again would cost)."""
    recipe = load_recipe(ROOT / "recipes/students/qwen2.5-math-1.5b-openr1-lora.yaml")
    assert recipe.import_traces is not None
    imported = plan(recipe, traces=2000, mean_tokens=4000.0, keep_rate=0.5)
    assert imported["generation"]["teacher"] == f"imported: {recipe.import_traces.source}"
    assert imported["generation"]["gpu_hours"] == 0.0 and imported["total"]["gpu_hours"] == imported["sft"]["gpu_hours"]
    again = plan(recipe, traces=2000, mean_tokens=4000.0, keep_rate=0.5, teacher="deepseek-ai/DeepSeek-R1")
    assert again["generation"]["gpu_hours"] > 0


# ------------------------------------------------------------------------------------ on-policy distillation (kd)
KD_RECIPES = sorted((ROOT / "recipes" / "kd").glob("*.yaml"))
# Qwen2.5-Math-7B's config.json (R1-Distill-Qwen-7B's architecture), counted by hand: 28 layers of 233,057,792
# (attention 29,364,736 with q/k/v biases, MLP 3 x 3,584 x 18,944, two norms), untied embedding and head of
# 152,064 x 3,584 each, the final norm.
QWEN_7B = 28 * 233_057_792 + 2 * 152_064 * 3_584 + 3_584


def test_kd_teacher_flops_are_two_n_teacher_per_scored_token():
    """2 prompts x 3 samples a step, 6-token prompts, 10-token completions, 5 steps: the teacher scores
    2 x 3 x (6 + 10) = 96 tokens a step, at 2 x N_teacher FLOPs each; the student samples 60 at 2 x N and
    trains on the same 96 at 8 x N (full fine-tune with gradient checkpointing)."""
    recipe = load_recipe(KD_RECIPES[0].parent / "r1-distill-qwen-1.5b-from-7b.yaml",
                         ["kd.prompts_per_step=2", "kd.samples_per_prompt=3", "kd.max_completion_length=10",
                          "kd.max_steps=5"])
    result = plan(recipe, kd_prompt_tokens=6)
    kd = result["kd"]
    assert QWEN_7B == 7_615_616_512 and kd["teacher_params_b"] == pytest.approx(QWEN_7B / 1e9, abs=1e-3)
    assert kd["per_step"]["scored_tokens"] == 96 and kd["per_step"]["generated_tokens"] == 60
    assert kd["per_step"]["flops"]["teacher"] == 2 * QWEN_7B * 96
    assert kd["flops"]["teacher"] == 2 * QWEN_7B * 96 * 5
    student = kd["params_b"] * 1e9
    assert kd["per_step"]["flops"]["sampling"] == pytest.approx(2 * student * 60, rel=1e-3)
    assert kd["flops_per_param_token"] == 8
    assert kd["per_step"]["flops"]["update"] == pytest.approx(8 * student * 96, rel=1e-3)
    # kd.model is given: generate, filter and sft do not run, and the total is kd's
    assert result["generation"] is None and result["sft"] is None
    assert result["total"]["gpu_hours"] == kd["gpu_hours"]


@pytest.mark.parametrize("path", KD_RECIPES, ids=lambda p: p.stem)
def test_shipped_kd_recipes_plan_with_the_teacher_costing_the_parameter_ratio(path):
    """The teacher scores prompt + completion, the student samples the completion: the teacher's FLOPs are the
    student's sampling FLOPs times the parameter ratio, times (prompt + completion) / completion."""
    from distill.sft.memory import GIB

    recipe = load_recipe(path)
    kd = plan(recipe)["kd"]
    flops, step = kd["flops"], kd["per_step"]
    assert all(value > 0 for value in flops.values())
    ratio = kd["teacher_params_b"] / kd["params_b"]
    assert ratio > 4  # 7B over 1.5B, 70B over 8B
    assert flops["teacher"] / flops["sampling"] > ratio
    assert flops["teacher"] / flops["sampling"] == pytest.approx(
        ratio * step["scored_tokens"] / step["generated_tokens"], rel=1e-3)
    assert step["generated_tokens"] == recipe.kd.prompts_per_step * recipe.kd.samples_per_prompt * \
        recipe.kd.max_completion_length
    # the teacher's memory beside the student's: bf16 weights and the completions' fp32 logits
    memory = kd["memory_gib"]
    assert kd["teacher_dtype"] == "bf16"
    assert memory["teacher_weights"] == pytest.approx(kd["teacher_params_b"] * 1e9 * 2 / GIB, rel=1e-3)
    assert memory["teacher_logits"] > 0 and memory["student"] > 0
    assert memory["per_device"] == pytest.approx(
        memory["student"] + memory["teacher_weights"] + memory["teacher_logits"], abs=0.01)


def test_kd_memory_is_the_dry_runs_estimate_on_a_gpu():
    """plan reuses kd's own per-step estimate (distill.kd.onpolicy.step_memory, what dry_run reports), on a GPU
    whatever machine plans: no bf16 sampling copy, which only the CPU trainer keeps."""
    from distill.kd.onpolicy import step_memory
    from distill.plan import _model_counts, model_source

    recipe = load_recipe(ROOT / "recipes/kd/r1-distill-qwen-1.5b-from-7b.yaml")
    kd = plan(recipe)["kd"]
    counts, config = _model_counts(model_source(recipe.kd.model), True, recipe.kd.lora.model_dump_json())
    teacher, teacher_config = _model_counts(model_source(recipe.kd.teacher), True)
    memory = step_memory(recipe.kd, counts, config, teacher, teacher_config, precision="bf16", device="gpu")
    assert kd["memory_gib"]["per_device"] == memory["per_device_gib"]["ddp"]
    assert memory["breakdown_gib_one_device"]["sampling_copy"] == 0


def test_kd_after_sft_adds_a_row_with_the_generation_teacher():
    """kd after sft trains sft's student (counted from sft.model) against the recipe's generation teacher; the
    total adds generation, sft and kd."""
    recipe = load_recipe(ROOT / "recipes/students/qwen2.5-math-1.5b-lora.yaml", ["kd.max_steps=10"])
    result = plan(recipe, traces=1000, mean_tokens=4000.0, keep_rate=0.5)
    kd, gen, sft = result["kd"], result["generation"], result["sft"]
    assert kd["teacher"] == gen["teacher"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    assert kd["teacher_params_b"] == gen["teacher_params_b"]
    assert kd["params_b"] == pytest.approx(sft["params_b"], abs=0.1) and kd["steps"] == 10
    hours = gen["gpu_hours"] + sft["gpu_hours"] + kd["gpu_hours"]
    assert result["total"]["gpu_hours"] == pytest.approx(hours, abs=0.02)


def test_the_kd_row_is_printed_and_in_the_json(tmp_path):
    from rich.console import Console
    from typer.testing import CliRunner

    from distill.cli import app
    from distill.plan import print_plan

    path = ROOT / "recipes/kd/r1-distill-llama-8b-from-70b.yaml"
    result = CliRunner().invoke(app, ["plan", str(path), "--json", "--gpu", "h200"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kd"]["teacher"] == "deepseek-ai/DeepSeek-R1-Distill-Llama-70B" and data["generation"] is None
    console = Console(record=True, width=200)
    print_plan(data, console)
    text = console.export_text()
    assert "kd " in text and "teacher scoring" in text and "DeepSeek-R1-Distill-Llama-70B" in text
    assert "teacher weights 131.4 GiB (bf16)" in text and "generate, filter and sft do not run" in text
