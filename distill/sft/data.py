"""Kept traces -> tokenized chat examples whose labels cover the assistant turn and its end-of-turn token.

The assistant turn is `distill.chat_format.assistant_turn`: `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`. Two things make this more
than `apply_chat_template`:

* Loss goes on what the student must produce at inference: the tokens after the generation prompt, up to
  and including the token that ends the turn (students that never learn to stop are the known failure of
  R1-style distillation). The sequence starts with the very ids `apply_chat_template(...,
  add_generation_prompt=True)` gives inference, so the mask cannot drift from the template.
* Some templates (DeepSeek-R1-Distill's, for one) strip `<think>...</think>` from every assistant message,
  the last included, and some prefill `<think>\\n` in the generation prompt. Rendering the conversation would
  then train on answers without reasoning. We detect that by rendering a sentinel in place of the assistant
  text and rebuild the turn as `generation prompt + completion + the template's own turn ending`.

`build_dataset` streams a JSONL of kept traces into an Arrow dataset on disk (memory stays flat whatever
the file size) and applies the over-length policy, recording what it did to every record.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from distill.chat_format import assistant_turn
from distill.errors import DistillError
from distill.files import stat_fingerprint
from distill.jsonl import JsonlReader
from distill.records import Trace, read_traces

IGNORE = -100
SENTINEL = "\u2063DISTILL_ASSISTANT_TURN\u2063"  # invisible separators: no template rewrites this

Status = Literal["ok", "truncated", "dropped_overlong", "not_kept"]


class ExampleError(DistillError):
    """A trace that cannot become a training example (the loader adds file:line)."""


def _render(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except (TemplateError, ValueError, TypeError, KeyError) as exc:  # a template that rejects this conversation
        raise ExampleError(f"the chat template rejected the conversation ({type(exc).__name__}: {exc})") from None


def _prefilled(generation_prompt: str, content: str, longest: int = 64) -> int:
    """How many leading characters of `content` the generation prompt already holds (e.g. '<think>\\n')."""
    for k in range(min(longest, len(content), len(generation_prompt)), 0, -1):
        if generation_prompt.endswith(content[:k]):
            return k
    return 0


def _is_special(tokenizer, token_id: int) -> bool:
    if token_id in set(tokenizer.all_special_ids):
        return True
    added = tokenizer.added_tokens_decoder.get(token_id)
    return bool(added is not None and added.special)


@dataclass(frozen=True)
class Rendered:
    text: str            # the whole training sequence as text
    prompt: str          # the generation prompt (what inference feeds the model)
    completion: str      # what the model must write after the prompt, without the turn ending
    turn_end: str        # the template's end-of-turn token text, trained as part of the completion
    stop_id: int
    template_kept_reasoning: bool


def render_example(tokenizer, messages: list[dict[str, str]], reasoning: str, answer: str) -> Rendered:
    content = assistant_turn(reasoning, answer)
    prompt = _render(tokenizer, messages, generation_prompt=True)
    completion = content[_prefilled(prompt, content):]

    # The direct way first: the template renders our assistant text untouched.
    full = _render(tokenizer, [*messages, {"role": "assistant", "content": content}], generation_prompt=False)
    kept = full.startswith(prompt) and full[len(prompt):].startswith(completion)
    if kept:
        tail = full[len(prompt) + len(completion):]
    else:
        # The template rewrote the turn (stripped the reasoning, reformatted it): take its framing from a
        # sentinel turn and put our text inside it.
        probe = _render(tokenizer, [*messages, {"role": "assistant", "content": SENTINEL}], generation_prompt=False)
        at = probe.find(SENTINEL)
        if at < 0:
            raise ExampleError("the chat template drops the assistant message entirely; cannot train on it")
        head, tail = probe[:at], probe[at + len(SENTINEL):]
        if not prompt.startswith(head):
            raise ExampleError(
                "the chat template renders the generation prompt differently from the conversation it starts "
                f"(prompt ends {prompt[-40:]!r}, conversation has {head[-40:]!r}); set a training-compatible "
                "chat template on the student's tokenizer")

    tail_ids = tokenizer(tail, add_special_tokens=False).input_ids if tail else []
    if tail_ids and _is_special(tokenizer, tail_ids[0]):
        stop_id = tail_ids[0]
        turn_end = tokenizer.convert_ids_to_tokens(stop_id)
        rest = tail[tail.find(turn_end) + len(turn_end):]
    else:
        # No special token closes the turn: append EOS ourselves, or the student never learns to stop.
        if tokenizer.eos_token is None:
            raise ExampleError("the tokenizer has no EOS token and its chat template ends turns without one")
        turn_end, stop_id, rest = tokenizer.eos_token, tokenizer.eos_token_id, tail
    return Rendered(text=prompt + completion + turn_end + rest, prompt=prompt, completion=completion,
                    turn_end=turn_end, stop_id=int(stop_id), template_kept_reasoning=kept)


def build_example(tokenizer, messages: list[dict[str, str]], reasoning: str, answer: str) -> dict[str, Any]:
    """Token ids and labels of one trace: labels are -100 except on the completion and its end-of-turn token."""
    r = render_example(tokenizer, messages, reasoning, answer)
    prompt_ids = tokenizer(r.prompt, add_special_tokens=False).input_ids
    ids = tokenizer(r.text, add_special_tokens=False).input_ids
    if ids[:len(prompt_ids)] != prompt_ids:
        # The prompt's last tokens merge with the completion's first (a template whose generation prompt
        # ends in a space, say). Inference feeds the prompt's own ids and the model writes from there, so
        # train on exactly that: prompt ids, then the rest tokenized on its own.
        ids = prompt_ids + tokenizer(r.text[len(r.prompt):], add_special_tokens=False).input_ids
    start = len(prompt_ids)
    # The turn ends at the first stop token after the prompt; a stop token inside the text would teach the
    # student to end its answer early.
    try:
        end = ids.index(r.stop_id, start)
    except ValueError:
        raise ExampleError(f"the end-of-turn token {r.turn_end!r} is missing from the rendered example") from None
    completion_ids = tokenizer(r.completion, add_special_tokens=False).input_ids
    if r.stop_id in completion_ids:
        raise ExampleError(f"the reasoning or answer contains the end-of-turn token {r.turn_end!r}")
    labels = [IGNORE] * start + ids[start:end + 1] + [IGNORE] * (len(ids) - end - 1)
    return {"input_ids": ids, "labels": labels, "stop_id": r.stop_id,
            "template_kept_reasoning": r.template_kept_reasoning}


# ------------------------------------------------------------------------------------- the train file
def check_train_file(train_file: Path | str) -> int:
    """Read the whole train file before anything else (a dry run, a model load): every row a trace, at least
    one row. Returns the number of traces; the error names the file, line and field."""
    rows = sum(1 for _ in read_traces(train_file, "sft trains on kept traces (kept.jsonl from `distill filter`)"))
    if rows == 0:
        raise DistillError(f"{train_file}: holds no traces; nothing to train on (did the filter keep any?)")
    return rows


# ------------------------------------------------------------------------------------------ datasets
@lru_cache(maxsize=4)
def load_tokenizer(model_path: str, chat_template: str | None = None, extra_tokens: tuple[str, ...] = ()):
    """The student's tokenizer with the chat template it trains in (its own, or the recipe's `sft.chat_template`)."""
    from transformers import AutoTokenizer

    from distill.chat_templates import give_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    give_chat_template(tokenizer, chat_template, extra_tokens)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenized_traces(train_file: str, model_path: str, max_length: int, overlong: str, fingerprint: str,
                     chat_template: str | None = None, extra_tokens: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """Every record of the file, tokenized as training sees it, with what the over-length policy did to it
    (`status`). Offline logit KD's store (distill.kd.offline) scores these very rows."""
    del fingerprint  # only there so a changed file gets a new cache entry
    tokenizer = load_tokenizer(model_path, chat_template, tuple(extra_tokens))
    reader = JsonlReader(train_file, Trace)
    for lineno, trace in enumerate(reader, start=1):
        base = {"problem_id": trace.problem_id, "sample": trace.sample}
        if getattr(trace, "kept", True) is False:
            yield {**base, "input_ids": [], "labels": [], "n_tokens": 0, "length": 0, "status": "not_kept",
                   "stop_id": -1}
            continue
        try:
            ex = build_example(tokenizer, trace.prompt, trace.reasoning, trace.answer)
        except ExampleError as exc:
            raise DistillError(f"{train_file}: record {lineno} ({trace.key}): {exc}") from None
        n = len(ex["input_ids"])
        status: Status = "ok"
        ids, labels = ex["input_ids"], ex["labels"]
        if n > max_length:
            if overlong == "drop":
                status, ids, labels = "dropped_overlong", [], []
            else:
                status, ids, labels = "truncated", ids[:max_length], labels[:max_length]
                if all(x == IGNORE for x in labels):  # nothing left to learn: the prompt alone fills it
                    status, ids, labels = "dropped_overlong", [], []
        yield {**base, "input_ids": ids, "labels": labels, "n_tokens": n, "length": len(ids), "status": status,
               "stop_id": ex["stop_id"]}


@dataclass
class SFTData:
    train: Any               # datasets.Dataset: input_ids, labels (over-length policy applied)
    eval: Any | None
    report: dict[str, Any]   # counts per status, tokens, eval problems: written to data_report.json
    stop_id: int


def teacher_rows(labels: list[int], record: list[int] | None, key: str) -> list[int]:
    """Per token, the row of the teacher's top-k store holding the teacher's distribution for that token's label
    (-1 where no loss is taken). `record` is the store's [first row, rows] for this trace: one row per supervised
    label after the first position, in order, as the shifted loss reads them."""
    if record is None:
        raise DistillError(f"the teacher's top-k store has no record of trace {key}: it was made from another train file")
    first, count = record
    rows, at = [-1] * len(labels), first
    for j in range(1, len(labels)):
        if labels[j] != IGNORE:
            rows[j] = at
            at += 1
    if at - first != count:
        raise DistillError(f"the teacher's top-k store holds {count} positions for trace {key}, which trains on "
                           f"{at - first} tokens: it was made with another tokenizer, template or max_length")
    return rows


def _with_teacher_rows(batch: dict[str, list], records: dict[str, list[int]]) -> dict[str, list]:
    from distill.records import trace_key

    keys = [trace_key(p, s) for p, s in zip(batch["problem_id"], batch["sample"])]
    return {"teacher_row": [teacher_rows(labels, records.get(key), key) for labels, key in zip(batch["labels"], keys)]}


def build_dataset(train_file: Path, model_path: str, max_length: int, overlong: str, eval_fraction: float,
                  seed: int, cache_dir: Path, num_proc: int | None = None, chat_template: str | None = None,
                  extra_tokens: tuple[str, ...] = (), teacher_records: dict[str, list[int]] | None = None) -> SFTData:
    """Tokenize the kept traces once (cached under `cache_dir`), apply the over-length policy, hold out problems.

    `teacher_records` (offline logit KD: trace key -> [first row, rows] of the teacher's top-k store) adds a
    `teacher_row` column aligned with the tokens, which packing concatenates with them like the labels."""
    import numpy as np
    from datasets import Dataset, Features, List, Value
    from datasets.exceptions import DatasetGenerationError

    train_file = Path(train_file)
    if not train_file.exists():
        raise DistillError(f"{train_file}: no such file of kept traces (run `distill filter` first)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    features = Features({
        "problem_id": Value("string"), "sample": Value("int64"), "input_ids": List(Value("int32")),
        "labels": List(Value("int32")), "n_tokens": Value("int64"), "length": Value("int64"),
        "status": Value("string"), "stop_id": Value("int64")})
    try:
        full = Dataset.from_generator(
            tokenized_traces, features=features, cache_dir=str(cache_dir),
            gen_kwargs={"train_file": str(train_file), "model_path": model_path, "max_length": max_length,
                        "overlong": overlong, "fingerprint": stat_fingerprint(train_file),
                        "chat_template": chat_template, "extra_tokens": list(extra_tokens)},
        )
    except DatasetGenerationError as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, DistillError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # a bad record: our message names file:line, not datasets' wrapper
            raise cause from None
        raise
    statuses = list(full["status"])
    counts = {s: statuses.count(s) for s in ("ok", "truncated", "dropped_overlong", "not_kept")}
    n_tokens = np.asarray(full["n_tokens"], dtype=np.int64)
    usable = full.filter(lambda status: status in ("ok", "truncated"), input_columns="status",
                         num_proc=num_proc, desc="over-length policy")
    if len(usable) == 0:
        raise DistillError(f"{train_file}: no usable examples ({counts}); raise sft.max_length "
                           f"(longest example: {int(n_tokens.max(initial=0))} tokens) or set sft.overlong=truncate")
    # Trace files are written in the order the teacher finished them, which varies from run to run; in key
    # order, the same kept traces give the same packing and the same batches, so the same student.
    usable = usable.sort(["problem_id", "sample"]).flatten_indices()
    keep = ["input_ids", "labels"]
    if teacher_records is not None:
        usable = usable.map(_with_teacher_rows, batched=True, fn_kwargs={"records": teacher_records},
                            features=Features({**usable.features, "teacher_row": List(Value("int64"))}),
                            num_proc=num_proc, desc="teacher rows")
        keep.append("teacher_row")

    # Hold out whole problems, so no sample of an eval problem is trained on.
    problems = sorted(set(usable["problem_id"]))
    n_eval = round(eval_fraction * len(problems))
    if eval_fraction > 0 and len(problems) >= 2:
        n_eval = min(max(n_eval, 1), len(problems) - 1)
    else:
        n_eval = 0
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(problems)[:n_eval].tolist())
    if held:
        train = usable.filter(lambda p: p not in held, input_columns="problem_id", num_proc=num_proc,
                              desc="train split")
        evalset = usable.filter(lambda p: p in held, input_columns="problem_id", num_proc=num_proc,
                                desc="eval split")
    else:
        train, evalset = usable, None
    stops = sorted(set(usable["stop_id"]))
    if len(stops) != 1:
        raise DistillError(f"{train_file}: examples end their turn with different tokens {stops}; "
                           "one chat template per run")
    lengths = np.asarray(list(usable["length"]), dtype=np.int64)
    report = {
        "train_file": str(train_file), "records": len(full), "counts": counts,
        "overlong_policy": overlong, "max_length": max_length,
        "tokens_before_policy": int(n_tokens.sum()), "tokens_after_policy": int(lengths.sum()),
        "longest_example": int(n_tokens.max(initial=0)), "longest_kept": int(lengths.max()),
        "mean_length": float(lengths.mean()),
        "train_examples": len(train), "eval_examples": len(evalset) if evalset is not None else 0,
        "eval_problems": len(held),
    }
    return SFTData(train=train.select_columns(keep),
                   eval=evalset.select_columns(keep) if evalset is not None else None,
                   report=report, stop_id=int(stops[0]))


def default_num_proc() -> int | None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return None if cores <= 2 else min(8, cores - 1)
