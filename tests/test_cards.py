"""Dataset and model cards, the HTML report and the datasets export, from files shaped like a run's."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill import cards
from distill.config import GenerateConfig, Recipe, SFTConfig
from distill.errors import DistillError
from distill.jsonl import JsonlWriter

ROOT = Path(__file__).resolve().parents[1]


def trace(pid: str, sample: int, kept: bool, tokens: int, reasons=()) -> dict:
    return {"problem_id": pid, "sample": sample, "teacher": "bundled:smollm2-135m-instruct",
            "prompt": [{"role": "user", "content": f"What is {sample} + 1?"}],
            "completion": "<think>\nadd one\n</think>\n\n\\boxed{2}", "reasoning": "add one",
            "answer": "\\boxed{2}", "finish_reason": "stop", "prompt_tokens": 12, "completion_tokens": tokens,
            "config_hash": "abc", "kept": kept, "reasons": list(reasons),
            "scores": {"math_verify": kept, "lang_mix": 0.0}, "custom_field": "carried"}


@pytest.fixture()
def filter_dir(tmp_path: Path) -> Path:
    out = tmp_path / "filter"
    with JsonlWriter(out / "kept.jsonl") as w:
        for i in range(6):
            w.write(trace(f"p{i}", 0, True, 40 + 7 * i))
    with JsonlWriter(out / "rejected.jsonl") as w:
        for i in range(9):
            reasons = [{"check": "math_verify", "detail": "wrong"}]
            if i % 3 == 0:
                reasons.append({"check": "truncated", "detail": "finish_reason=length"})
            w.write(trace(f"p{i}", 1, False, 60 + 11 * i, reasons))
    stats = {"kept": 6, "rejected": 9, "failed": {"math_verify": 9, "truncated": 3},
             "funnel": [{"stage": "input", "remaining": 15},
                        {"stage": "truncated", "removed": 3, "remaining": 12},
                        {"stage": "math_verify", "removed": 6, "remaining": 6}]}
    (out / "stats.json").write_text(json.dumps(stats))
    (out / "decontamination.json").write_text(json.dumps({"against": ["eval.jsonl"], "removed": 0}))
    return out


def front_matter(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_dataset_card_has_hf_front_matter_funnel_plots_and_license(filter_dir):
    gen = GenerateConfig(problems=Path("data/demo/train.jsonl"))
    card = cards.write_dataset_card(filter_dir, gen, name="demo-traces", eval_sets=["data/demo/eval.jsonl"])
    meta = front_matter(card.path)
    assert meta["license"] == "apache-2.0" and meta["size_categories"] == ["n<1K"]
    assert meta["configs"][0]["data_files"][0]["path"] == "kept.jsonl"
    text = card.path.read_text()
    assert "6 kept of 15 generated" in text
    assert "| truncated | 3 | 12 |" in text and "| math_verify | 6 | 6 |" in text
    assert "temperature 0.6, top-p 0.95" in text and "`data/demo/eval.jsonl`" in text
    assert '"removed": 0' in text  # the decontamination report itself
    for name in ("token_lengths", "reject_reasons"):
        png = card.plots[name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_model_card_carries_recipe_curve_and_eval_table(tmp_path, filter_dir):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in range(1, 9))
                   + json.dumps({"step": 8, "eval_loss": 0.4}) + "\n")
    scores = {"k": 4, "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 192},
              "benchmarks": {"heldout": {}},
              "scores": {"base": {"heldout": {"pass@1": {"value": 0.12, "ci_low": 0.08, "ci_high": 0.17}}},
                         "student": {"heldout": {"pass@1": {"value": 0.31, "ci_low": 0.25, "ci_high": 0.37}}}},
              "deltas": {"student": {"heldout": {"against": "base",
                                                 "pass@1": {"value": 0.19, "ci_low": 0.12, "ci_high": 0.26}}}}}
    recipe = Recipe(name="demo", description="a test run", run_dir=tmp_path / "run")
    from distill.sft.callbacks import plot_log

    curve = plot_log(log, tmp_path / "student" / "training.png")  # what sft draws
    path = cards.write_model_card(tmp_path / "student", SFTConfig(method="lora"), scores=scores,
                                  training={"train_loss": 0.5}, plot_path=curve, recipe=recipe, kept=6)
    meta = front_matter(path)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["library_name"] == "peft"
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == "heldout" and result["metrics"][0]["value"] == 0.31
    text = path.read_text()
    assert "0.310 [0.250, 0.370]" in text and "+0.190 [+0.120, +0.260] better" in text
    assert "6 verified traces" in text and "run_dir:" in text  # the recipe is embedded
    assert "| train_loss | 0.5 |" in text
    assert "![training curve](training.png)" in text  # the one curve sft drew, not a second plot
    assert not (tmp_path / "student" / "plots").exists()


def test_export_round_trips_through_datasets_and_parquet(tmp_path, filter_dir):
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    from distill.export import export_dataset

    result = export_dataset(filter_dir / "kept.jsonl", tmp_path / "dataset")
    assert result.rows == 6
    ds = load_from_disk(str(result.dataset_dir))
    row = ds[2]
    assert row["problem_id"] == "p2" and row["completion_tokens"] == 54
    assert row["messages"][-1] == {"role": "assistant", "content": "<think>\nadd one\n</think>\n\n\\boxed{2}"}
    assert json.loads(row["extra"]) == {"custom_field": "carried"}
    assert pq.read_table(result.parquet_path).num_rows == 6
    assert not (tmp_path / "dataset" / ".cache").exists()


def test_push_to_hub_offline_fails_with_a_clear_message(tmp_path, filter_dir, monkeypatch):
    from distill.export import export_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DistillError, match="offline mode is on.*saved locally"):
        export_dataset(filter_dir / "kept.jsonl", tmp_path / "dataset", push_to_hub="someone/demo-traces")
    assert (tmp_path / "dataset" / "train.parquet").exists()  # the local copy is there regardless


def test_demo_problem_sets_are_reproducible_and_disjoint(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "data/demo/make_demo.py"), "--out-dir", str(tmp_path)], check=True)
    for split in ("train", "eval"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (ROOT / f"data/demo/{split}.jsonl").read_bytes()
    rows = {s: [json.loads(line) for line in (ROOT / f"data/demo/{s}.jsonl").open()] for s in ("train", "eval")}
    facts = {}
    for split, split_rows in rows.items():
        facts[split] = set()
        for row in split_rows:
            a, b = (int(x) for x in re.findall(r"\d+", row["problem"]))
            family = row["meta"]["family"]
            assert row["answer"] == str(a * b if family == "times" else a + b)
            facts[split].add((family, min(a, b), max(a, b)))
    assert not facts["train"] & facts["eval"]  # held out: no fact (in either order) in both splits
    assert len(rows["eval"]) == 64 and {r["meta"]["family"] for r in rows["eval"]} == {"times", "plus"}


def test_exported_messages_are_what_sft_trains_on(tmp_path, tiny_model):
    """Whitespace around the reasoning and answer included: the export used to strip it, SFT does not."""
    from datasets import load_from_disk

    from distill.export import export_dataset
    from distill.sft.data import load_tokenizer, render_example

    kept = tmp_path / "kept.jsonl"
    row = trace("p0", 0, True, 30) | {"reasoning": "  add one\n", "answer": "\n\\boxed{2}  "}
    kept.write_text(json.dumps(row) + "\n")
    result = export_dataset(kept, tmp_path / "dataset")
    exported = load_from_disk(str(result.dataset_dir))[0]

    rendered = render_example(load_tokenizer(tiny_model), row["prompt"], row["reasoning"], row["answer"])
    content = exported["messages"][-1]["content"]
    assert exported["messages"][:-1] == row["prompt"] and exported["prompt"] == row["prompt"]
    assert content == "<think>\n  add one\n\n</think>\n\n\n\\boxed{2}  "
    assert rendered.template_kept_reasoning and content in rendered.text
    assert content.endswith(rendered.completion)  # what the loss covers, minus the template's prefill


def test_export_command_writes_the_dataset(tmp_path, filter_dir):
    from typer.testing import CliRunner

    from distill.cli import app

    done = CliRunner().invoke(app, ["export", str(filter_dir / "kept.jsonl"), "--out-dir", str(tmp_path / "ds")])
    assert done.exit_code == 0, done.output
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "ds" / "train.parquet")
    assert table.num_rows == 6 and "messages" in table.column_names


def test_a_gemma_student_card_carries_the_gemma_terms(tmp_path):
    path = cards.write_model_card(tmp_path / "student", SFTConfig(model="bundled:gemma3-270m", chat_template="gemma"),
                                  scores=None, training=None)
    meta = front_matter(path)
    assert meta["license"] == "gemma" and meta["license_link"] == "https://ai.google.dev/gemma/terms"
    assert meta["base_model"] == "google/gemma-3-270m"
    assert "Gemma Terms of Use" in path.read_text()
