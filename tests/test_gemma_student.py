"""A base model of another family as the student: Gemma 3 270M (262k vocabulary, no chat template) trained
in the recipe's template, then evaluated: it must stop on its own <end_of_turn>.

One Gemma student is trained for the module (the bundled model's conversion is cached across runs; the
load and 262k-vocabulary steps are what make this slow), and both tests read it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.chat_format import assistant_turn
from distill.chat_templates import TEMPLATES
from distill.config import MATH_PROMPT, EvalConfig, SFTConfig
from distill.eval import evaluate
from distill.sft import train

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
END_OF_TURN = 106  # Gemma 3's <end_of_turn>


def demo_problems(count: int) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "distill/data/demo/train.jsonl").read_text().splitlines()[:count]]


@pytest.fixture(scope="module")
def gemma_student(gemma3, tmp_path_factory):
    """Gemma 3 270M base LoRA-tuned (merged) on short verified traces in the `gemma` template from the recipe."""
    folder = tmp_path_factory.mktemp("gemma")
    problems = demo_problems(2)  # two short traces, learnt by heart: the test is about stopping
    with open(folder / "kept.jsonl", "w") as out:
        for p in problems:
            reasoning, answer = f"The answer is {p['answer']}.", f"$\\boxed{{{p['answer']}}}$"
            out.write(json.dumps({
                "problem_id": p["id"], "sample": 0, "teacher": "reference",
                "prompt": [{"role": "user", "content": MATH_PROMPT.format(problem=p["problem"])}],
                "completion": assistant_turn(reasoning, answer)[len("<think>\n"):], "reasoning": reasoning,
                "answer": answer, "finish_reason": "stop", "kept": True}) + "\n")
    (folder / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    config = SFTConfig(model="bundled:gemma3-270m", chat_template="gemma", train_file=folder / "kept.jsonl",
                       output_dir=folder / "student", method="lora", lora={"r": 16, "alpha": 32, "dropout": 0.0},
                       max_length=128, per_device_batch_size=2, gradient_accumulation_steps=1, max_steps=8,
                       learning_rate=2e-3, warmup_ratio=0.0, eval_fraction=0.0, save_steps=1000, merge=True,
                       gradient_checkpointing=False)
    return train(config, progress=False), folder


def test_gemma_base_trains_in_the_recipe_template_and_is_saved_to_stop(gemma_student):
    from transformers import AutoTokenizer, GenerationConfig

    result, _ = gemma_student
    metrics = result.metrics
    assert metrics["stop_token_id"] == END_OF_TURN  # the labels end on <end_of_turn>, not <eos>
    losses = [json.loads(line)["loss"] for line in result.log_path.read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 8 and losses[-1] < 0.5 * losses[0]
    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    assert tokenizer.chat_template == TEMPLATES["gemma"].jinja  # vLLM, eval and users render the same turns
    assert len(tokenizer) == 262_144  # Gemma's vocabulary holds both turn tokens: nothing added, no resize
    eos = GenerationConfig.from_pretrained(result.merged_dir).eos_token_id
    assert END_OF_TURN in ([eos] if isinstance(eos, int) else eos)


def test_trained_gemma_stops_on_end_of_turn_at_eval(gemma_student):
    result, folder = gemma_student
    scores = evaluate(EvalConfig(
        models=[f"student={result.merged_dir}"], backend="hf", k=1, output_dir=folder / "eval",
        benchmarks=[{"name": "train2", "path": folder / "problems.jsonl"}],
        sampling={"temperature": 0.0, "max_tokens": 48, "seed": 0}, hf={"batch_size": 2}), progress=False)
    traces = [json.loads(line) for line in (folder / "eval" / "student" / "train2.traces.jsonl").read_text().splitlines()]
    assert len(traces) == 2
    assert all(t["finish_reason"] == "stop" and t["completion_tokens"] < 48 for t in traces), traces
    assert all("</think>" in t["completion"] for t in traces)
    assert scores.value("student", "train2") > 0  # it learned the format well enough to be verified
