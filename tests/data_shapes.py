"""Small datasets in the exact shapes of the public sets (no tests here), written the ways users get them:
parquet, a `save_to_disk` folder, JSONL, or a Hugging Face datasets cache entry found by hub id offline.

Columns follow the published dataset cards: OpenR1-Math-220k (problem, solution, answer, problem_type,
question_type, source, uuid, is_reasoning_complete[], generations[], correctness_math_verify[],
correctness_llama[], finish_reasons[], correctness_count, messages), Mixture-of-Thoughts (messages,
num_tokens, source), OpenThoughts-114k / Bespoke-Stratos-17k (system, conversations [{from, value}]),
s1K (solution, question, cot_type, source_type, metadata, cot, thinking_trajectories[], attempt) and s1K-1.1
(… gemini_/deepseek_ thinking_trajectory and attempt). Problems are real GSM8K ones with their gold answers,
so the verifier has something true to check.
"""
from __future__ import annotations

import base64
import glob
import json
import pickle
import shutil
import zlib
from pathlib import Path
from typing import Any

from test_sft_support import gsm8k_rows

from distill.benchmarks import humaneval
from distill.records import Problem

HUMANEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"

OPENTHOUGHTS_SYSTEM = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
    "process before providing the final precise and accurate solutions. ... Please structure your response "
    "into two main sections: Thought and Solution. ...")


def _worked(row: dict[str, str]) -> tuple[str, str]:
    solution, _, number = row["answer"].rpartition("####")
    return solution.strip(), number.strip().replace(",", "")


def openr1(n: int = 4) -> list[dict[str, Any]]:
    """Per problem: a correct generation, a wrong one and a truncated one (the dataset's verdicts agree)."""
    rows = []
    for i, row in enumerate(gsm8k_rows(n)):
        reasoning, number = _worked(row)
        good = f"<think>\n{reasoning}\n</think>\n\nSo the answer is $\\boxed{{{number}}}$."
        wrong = f"<think>\n{reasoning}\nWait, I doubt it.\n</think>\n\nThe answer is $\\boxed{{{int(number) + 1}}}$."
        cut = f"<think>\n{reasoning[: len(reasoning) // 2]}"
        rows.append({
            "problem": row["question"], "solution": row["answer"], "answer": number, "problem_type": "Algebra",
            "question_type": "math-word-problem", "source": "gsm8k", "uuid": f"a1b2c3d4-{i:04d}",
            "is_reasoning_complete": [True, True, False], "generations": [good, wrong, cut],
            "correctness_math_verify": [True, False, False], "correctness_llama": None,
            "finish_reasons": ["stop", "stop", "length"], "correctness_count": 1,
            "messages": [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": good}],
        })
    return rows


def mixture_of_thoughts(n: int = 4) -> list[dict[str, Any]]:
    rows = []
    for row in gsm8k_rows(n, start=10):
        reasoning, number = _worked(row)
        reply = f"<think>\n{reasoning}\n</think>\n\nThe answer is $\\boxed{{{number}}}$."
        rows.append({"messages": [{"role": "user", "content": row["question"]},
                                  {"role": "assistant", "content": reply}],
                     "num_tokens": len(reply.split()), "source": "open-r1/OpenR1-Math-220k"})
    return rows


def openthoughts(n: int = 4) -> list[dict[str, Any]]:
    rows = []
    for row in gsm8k_rows(n, start=20):
        reasoning, number = _worked(row)
        reply = (f"<|begin_of_thought|>\n\n{reasoning}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
                 f"The answer is $\\boxed{{{number}}}$.\n\n<|end_of_solution|>")
        rows.append({"system": OPENTHOUGHTS_SYSTEM,
                     "conversations": [{"from": "user", "value": row["question"]},
                                       {"from": "assistant", "value": reply}]})
    return rows


def s1k(n: int = 3) -> list[dict[str, Any]]:
    rows = []
    for row in gsm8k_rows(n, start=30):
        reasoning, number = _worked(row)
        rows.append({"solution": number, "question": row["question"], "cot_type": "math",
                     "source_type": "openai/gsm8k", "metadata": json.dumps({"split": "train"}), "cot": None,
                     "thinking_trajectories": [reasoning], "attempt": f"The final answer is $\\boxed{{{number}}}$."})
    return rows


def s1k_1_1(n: int = 3) -> list[dict[str, Any]]:
    rows = []
    for row in gsm8k_rows(n, start=40):
        reasoning, number = _worked(row)
        rows.append({"solution": number, "question": row["question"], "cot_type": "math",
                     "source_type": "openai/gsm8k", "metadata": "{}",
                     "gemini_thinking_trajectory": reasoning, "gemini_attempt": f"Answer: {number}",
                     "deepseek_thinking_trajectory": reasoning + "\nLet me double-check. Yes.",
                     "deepseek_attempt": f"**Final Answer**\n\\boxed{{{number}}}",
                     "messages": [{"role": "user", "content": row["question"]}]})
    return rows


GPQA_ROWS = [{"Question": f"Which option is right ({i})?", "Correct Answer": "right", "Incorrect Answer 1": "w1",
              "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3", "Record ID": f"rec{i:03d}",
              "Subdomain": "Physics"} for i in range(12)]
def lcb_private(cases: list[dict]) -> str:
    """LiveCodeBench lite's private tests as published: base64 of zlib of a pickled JSON string."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


LCB_ROWS = [{"question_title": "Add", "question_content": "Read a and b, print a+b.", "platform": "atcoder",
             "question_id": "abc001_a", "contest_id": "abc001", "contest_date": "2024-08-01T00:00:00",
             "starter_code": "", "difficulty": "easy",
             "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
             "private_test_cases": lcb_private([{"input": "40 2\n", "output": "42\n", "testtype": "stdin"}]),
             "metadata": "{}"}]




def write_benchmark_caches(cache: Path) -> None:
    """The public benchmark datasets as a download leaves them in the datasets cache (their cards' columns)."""
    write_hub_cache([{"id": 60 + i, "problem": f"AIME problem {i}", "solution": "...", "answer": a, "url": "u",
                      "year": "2024"} for i, a in enumerate(["025", "204", "7"])], cache, "HuggingFaceH4/aime_2024")
    write_hub_cache([{"id": i, "problem": f"AMC problem {i}", "answer": a, "url": "u"}
                     for i, a in enumerate([142.0, 0.5, 3.0])], cache, "AI-MO/aimo-validation-amc")
    write_hub_cache(GPQA_ROWS, cache, "Idavidrein/gpqa", config="gpqa_diamond")
    write_hub_cache(LCB_ROWS, cache, "livecodebench/code_generation_lite", config="release_v5", split="test")


SHAPES = {"openr1": openr1, "messages": mixture_of_thoughts, "openthoughts": openthoughts, "s1k": s1k,
          "s1k-1.1": s1k_1_1}


# ------------------------------------------------------------------------------------------- writers
def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(rows: list[dict], path: Path) -> Path:
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def write_disk(rows: list[dict], path: Path, split: str | None = None) -> Path:
    """A save_to_disk folder: a Dataset, or a DatasetDict holding `split` when one is named."""
    import datasets

    data = datasets.Dataset.from_list(rows)
    (datasets.DatasetDict({split: data}) if split else data).save_to_disk(str(path))
    return path


def write_hub_cache(rows: list[dict], cache_dir: Path, repo_id: str, config: str = "default",
                    split: str = "train") -> Path:
    """The folder `datasets.load_dataset(repo_id, config, split=split)` leaves in HF_DATASETS_CACHE after a
    download: CACHE/<org>___<name, snake case>/<config>/0.0.0/<hash>/<name>-<split>.arrow + dataset_info.json.
    Built by `datasets` itself (the parquet builder under the dataset's name), then moved to the config
    folder the offline lookup scans (a download names it after the config; local files add a hash)."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    org, name = repo_id.split("/")
    staging = cache_dir.parent / f"{cache_dir.name}-staging"
    source = write_parquet(rows, cache_dir.parent / f"{name}-{split}.parquet")
    Parquet(cache_dir=str(staging), dataset_name=name, config_name=config, data_files={split: str(source)},
            hash="0123456789abcdef").download_and_prepare()
    built = Path(glob.glob(str(staging / "*" / f"{config}-*"))[0])
    target = cache_dir / f"{org}___{built.parent.name}" / config
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(target))
    shutil.rmtree(staging)
    return target


def humaneval_rows(n: int | None = None) -> list[dict[str, Any]]:
    """The first `n` rows of the real HumanEval file in ../shared (all 164 when n is None)."""
    import gzip
    from itertools import islice

    with gzip.open(HUMANEVAL, "rt") as handle:
        return [json.loads(line) for line in islice(handle, n)]


def humaneval_problem(row: dict[str, Any]) -> Problem:
    """A HumanEval row as the benchmark registry reads it."""
    return humaneval(row, f"{HUMANEVAL.name} {row['task_id']}")
