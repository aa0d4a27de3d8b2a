"""Kept traces as a Hugging Face `datasets` dataset: save_to_disk, parquet, and optionally push_to_hub.

The rows keep the trace fields and add `messages`, the conversational SFT example built by
`distill.chat_format.sft_messages`, the same function `distill sft` trains through, so the column is byte for
byte what distill trains on and `load_from_disk(...)` or the parquet file feeds TRL's SFTTrainer directly. Features are declared, not inferred, so free-form fields (`scores`, extra
metadata) travel as JSON strings and a column never changes type halfway through a file.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.chat_format import sft_messages
from distill.errors import DistillError
from distill.files import input_file, output_dir
from distill.jsonl import read_jsonl
from distill.records import read_traces

TRACE_FIELDS = ("problem_id", "sample", "teacher", "completion", "reasoning", "answer", "finish_reason",
                "prompt_tokens", "completion_tokens", "config_hash")


@dataclass
class ExportResult:
    dataset_dir: Path     # datasets.load_from_disk(dataset_dir)
    parquet_path: Path
    rows: int
    hub_url: str | None = None


def _features():
    from datasets import Features, Value

    turn = [{"role": Value("string"), "content": Value("string")}]
    return Features({
        "problem_id": Value("string"), "sample": Value("int64"), "teacher": Value("string"),
        "prompt": turn, "messages": turn, "completion": Value("string"), "reasoning": Value("string"),
        "answer": Value("string"), "finish_reason": Value("string"), "prompt_tokens": Value("int64"),
        "completion_tokens": Value("int64"), "config_hash": Value("string"), "scores": Value("string"),
        "extra": Value("string"),
    })


def _rows(path: str) -> Iterator[dict[str, Any]]:
    known = set(TRACE_FIELDS) | {"prompt", "scores", "kept", "reasons"}
    for row in read_jsonl(path):
        out = {name: row.get(name) for name in TRACE_FIELDS}
        out["messages"] = sft_messages(row.get("prompt", []), row.get("reasoning", ""), row.get("answer", ""))
        out["prompt"] = out["messages"][:-1]
        out["scores"] = json.dumps(row.get("scores", {}), ensure_ascii=False, sort_keys=True)
        out["extra"] = json.dumps({k: v for k, v in row.items() if k not in known}, ensure_ascii=False,
                                  sort_keys=True)
        yield out


def check_traces(kept: Path) -> int:
    """Every row of `kept` is a trace the SFT example can be built from, read before anything is written; the
    count of rows. A Problem file, or a row without `completion`, would give SFT rows without a user turn."""
    rows = 0
    for lineno, trace in read_traces(kept, "export takes traces (kept.jsonl from `distill filter`, or the traces "
                                           "of `distill generate` / `distill import`)"):
        for i, turn in enumerate(trace.prompt):
            if not {"role", "content"} <= set(turn):
                raise DistillError(f"{kept}:{lineno}: field 'prompt.{i}': expected a message with 'role' and "
                                   f"'content', got the keys {sorted(turn)}")
        if not any(turn.get("role") == "user" for turn in trace.prompt):
            raise DistillError(f"{kept}:{lineno}: field 'prompt': no user turn; the SFT example needs the question")
        rows += 1
    return rows


def export_dataset(kept: Path, out_dir: Path, *, push_to_hub: str | None = None, private: bool = True,
                   token: str | None = None, allow_empty: bool = False) -> ExportResult:
    """OUT_DIR/hf (save_to_disk) and OUT_DIR/train.parquet from a kept.jsonl; push when a repo id is given.

    The input is read and checked whole first, and the output folder checked, so bad input leaves an earlier
    export as it was; an input with no traces is an error unless `allow_empty`."""
    import datasets

    kept, out_dir = Path(kept), Path(out_dir)
    input_file(kept, "kept traces (run the filter first)")
    output_dir(out_dir, "the exported dataset")
    rows = check_traces(kept)
    if rows == 0 and not allow_empty:
        raise DistillError(f"{kept}: holds no traces; nothing to export ({out_dir} was left as it was). Pass "
                           "--allow-empty to write an empty dataset")
    # Three sub-second steps would each draw a tqdm bar between the stages' own rich bars.
    quiet = not datasets.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        return _export(kept, out_dir, push_to_hub, private, token, empty=rows == 0)
    finally:
        if quiet:
            datasets.enable_progress_bars()


def _export(kept: Path, out_dir: Path, push_to_hub: str | None, private: bool, token: str | None,
            empty: bool = False) -> ExportResult:
    from datasets import Dataset

    out_dir.mkdir(parents=True, exist_ok=True)
    # The generator's Arrow cache goes beside the output, not into ~/.cache, and is removed at the end.
    cache = out_dir / ".cache"
    shutil.rmtree(cache, ignore_errors=True)  # a stale cache from a crashed export would be reused by path
    if empty:  # asked for (--allow-empty); the generator builder refuses to make a split of no rows
        dataset = Dataset.from_dict({name: [] for name in _features()}, features=_features())
    else:
        from datasets.exceptions import DatasetGenerationError

        try:
            dataset = Dataset.from_generator(_rows, features=_features(), cache_dir=str(cache),
                                             gen_kwargs={"path": str(kept)})
        except DatasetGenerationError as exc:  # the file changed since it was checked: our message, not the wrapper
            cause = exc.__cause__ or exc.__context__
            raise DistillError(f"{kept}: {cause or exc}") from None
    # Write to temporary names and swap, so an export interrupted halfway leaves the previous one whole.
    disk, disk_tmp = out_dir / "hf", out_dir / ".hf.tmp"
    shutil.rmtree(disk_tmp, ignore_errors=True)
    dataset.save_to_disk(str(disk_tmp))
    parquet, parquet_tmp = out_dir / "train.parquet", out_dir / ".train.parquet.tmp"
    dataset.to_parquet(str(parquet_tmp))
    shutil.rmtree(disk, ignore_errors=True)
    disk_tmp.rename(disk)
    os.replace(parquet_tmp, parquet)
    url = push(dataset, push_to_hub, private=private, token=token) if push_to_hub else None
    rows = len(dataset)
    del dataset
    shutil.rmtree(cache, ignore_errors=True)
    return ExportResult(disk, parquet, rows, url)


def push(dataset, repo_id: str, *, private: bool = True, token: str | None = None) -> str:
    """dataset.push_to_hub with the failures a user can fix turned into one plain sentence."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.utils import get_token

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise DistillError(f"push_to_hub '{repo_id}': offline mode is on (HF_HUB_OFFLINE is set), so nothing "
                           "was uploaded; the dataset is saved locally. Unset HF_HUB_OFFLINE and log in "
                           "(`hf auth login`) to push.")
    if token is None and get_token() is None:
        raise DistillError(f"push_to_hub '{repo_id}': no Hugging Face token; run `hf auth login` or set HF_TOKEN.")
    try:
        dataset.push_to_hub(repo_id, private=private, token=token)
    except OfflineModeIsEnabled as exc:
        raise DistillError(f"push_to_hub '{repo_id}': offline mode is on ({exc}); the dataset is saved locally.") \
            from None
    except (ConnectionError, OSError) as exc:
        raise DistillError(f"push_to_hub '{repo_id}': cannot reach the Hugging Face Hub ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]}); the dataset is saved locally, push it later "
                           "when online.") from None
    except HfHubHTTPError as exc:
        raise DistillError(f"push_to_hub '{repo_id}': the Hub refused the upload ({str(exc).splitlines()[0][:200]})."
                           ) from None
    return f"https://huggingface.co/datasets/{repo_id}"
