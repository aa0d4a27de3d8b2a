"""Shared helpers for the SFT tests (no tests here): kept-trace files built from GSM8K's worked solutions.

GSM8K solutions are real reasoning of realistic, varied length, which is what packing and masking need;
they stand in for teacher traces so the SFT tests need no teacher run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.config import MATH_PROMPT, SFTConfig

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def gsm8k_rows(n: int, start: int = 0) -> list[dict[str, str]]:
    rows = []
    with open(GSM8K, encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i >= start + n:
                break
            if i >= start:
                rows.append(json.loads(line))
    return rows


def trace_record(i: int, row: dict[str, str], sample: int = 0, **extra: Any) -> dict[str, Any]:
    solution, _, number = row["answer"].rpartition("####")
    reasoning, answer = solution.strip(), f"The answer is $\\boxed{{{number.strip()}}}$."
    return {"problem_id": f"gsm8k-{i}", "sample": sample, "teacher": "gsm8k-reference",
            "prompt": [{"role": "user", "content": MATH_PROMPT.format(problem=row["question"])}],
            "completion": f"<think>\n{reasoning}\n</think>\n\n{answer}", "reasoning": reasoning,
            "answer": answer, "finish_reason": "stop", "kept": True, "reasons": [], "scores": {}, **extra}


def write_traces(path: Path, n: int, start: int = 0, samples: int = 1) -> Path:
    """`n` GSM8K problems as kept Verdict records (`samples` per problem), one JSON object a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for i, row in enumerate(gsm8k_rows(n, start), start=start):
            out.writelines(json.dumps(trace_record(i, row, s)) + "\n" for s in range(samples))
    return path


def tiny_config(tmp_path: Path, name: str = "run", **overrides: Any) -> SFTConfig:
    """A seconds-long SFT config on bundled:tiny (bf16: 4x faster matmuls on this CPU), no merge unless asked."""
    train_file = tmp_path / "kept.jsonl"
    if not train_file.exists():
        write_traces(train_file, 24)
    values: dict[str, Any] = {
        "model": "bundled:tiny", "train_file": train_file, "output_dir": tmp_path / name, "method": "lora",
        "precision": "bf16", "max_length": 384, "per_device_batch_size": 2, "gradient_accumulation_steps": 1,
        "max_steps": 4, "learning_rate": 1e-3, "warmup_ratio": 0.0, "eval_fraction": 0.0, "save_steps": 100,
        "logging_steps": 1, "merge": False, "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    }
    values.update(overrides)
    return SFTConfig.model_validate(values)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
