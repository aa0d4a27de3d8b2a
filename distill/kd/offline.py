"""Offline logit KD: the teacher's top-k log-probabilities over the very tokens SFT trains on, stored once, then
a forward-KL term beside SFT's cross-entropy (`sft.logit_kd`, trained by distill.sft.train).

    check_teacher(config, student)         the teacher shares the student's tokenizer, as SFT trains it (its chat
                                           template included); from the tokenizer files, before any weights load
    ensure_store(config, student, dtype)   the store for this train file, teacher, k and tokenization: reused when
                                           output_dir/teacher_topk/ was made for the same, else rebuilt and
                                           published whole (a staging folder renamed into place)
    TopKStore                              the store: for every supervised token (one row each, trace by trace) the
                                           teacher's k likeliest next tokens and their log-probs, ids uint16 (int32
                                           past 65,536 tokens) and log-probs float16 in two flat [tokens, k] files,
                                           memory-mapped; index.json maps each trace key to its first row and rows
    store_topk(traces, teacher, k, out)    the same store for any trace file, tokenized with the teacher's template
    example_loss(logits, example, ...)     alpha x top-k forward KL (plus tail) + (1 - alpha) x CE for one example

A store row belongs to a label, not to a position: row r of a trace is the teacher's distribution for its r-th
supervised label after the first token, which the student predicts from the position before it. SFT's rows carry
that row number per token (`teacher_row`, distill.sft.data), so packing moves it with the token it belongs to.

Scoring the traces a teacher already wrote (rather than keeping logprobs while it generates) lets any trace
file, imported ones included, be distilled at the logit level, as long as the teacher that scores it shares
the student's tokenizer.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.config import SFTConfig
from distill.errors import DistillError
from distill.files import atomic_write_json, file_digest, publish_dir, stat_fingerprint
from distill.kd.losses import kd_loss
from distill.kd.teacher import Teacher, bytes_per_token, check_tokenizers, first_difference, id_dtype

IGNORE = -100
STORE = "teacher_topk"  # the store's folder under the sft output folder
INDEX = "index.json"
LOGPROB_DTYPE = np.dtype(np.float16)


# ------------------------------------------------------------------------------------------------- the store
@dataclass
class TopKStore:
    """A published store folder: ids.bin and logprobs.bin ([tokens, k] each) and index.json."""

    folder: Path
    meta: dict[str, Any]
    _arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, folder: Path) -> TopKStore:
        folder = Path(folder)
        try:
            meta = json.loads((folder / INDEX).read_text())
        except (OSError, ValueError) as exc:
            raise DistillError(f"{folder}: not a teacher top-k store ({exc})") from None
        return cls(folder, meta)

    @property
    def records(self) -> dict[str, list[int]]:
        return self.meta["records"]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The two [tokens, k] arrays, memory-mapped on first use (a batch reads only its own rows)."""
        if self._arrays is None:
            shape = (self.meta["tokens"], self.meta["k"])
            ids = np.memmap(self.folder / "ids.bin", dtype=np.dtype(self.meta["id_dtype"]), mode="r", shape=shape)
            lps = np.memmap(self.folder / "logprobs.bin", dtype=LOGPROB_DTYPE, mode="r", shape=shape)
            self._arrays = (ids, lps)
        return self._arrays

    def lookup(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's top-k ids (int64) and log-probs (float32) of the given rows: [len(rows), k] each."""
        ids, lps = self.arrays()
        rows = np.asarray(rows, dtype=np.int64)
        return torch.from_numpy(ids[rows].astype(np.int64)), torch.from_numpy(lps[rows].astype(np.float32))

    def record(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        first, count = self.records[key]
        return self.lookup(np.arange(first, first + count))

    def figures(self) -> dict[str, Any]:
        """What metrics.json reports of the store: its size, per token and in all."""
        tokens, width = self.meta["tokens"], self.meta["bytes_per_token"]
        return {"traces": len(self.records), "tokens": tokens, "bytes": tokens * width, "bytes_per_token": width,
                "k": self.meta["k"], "vocabulary": self.meta["vocabulary"], "path": str(self.folder)}


def _teacher_topk(teacher: Teacher, chunk: list[tuple[str, list[int], list[int]]], k: int,
                  positions_at_once: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One teacher forward over a left-padded batch; per trace, the top-k at each supervised label, in order."""
    width = max(len(ids) for _, ids, _ in chunk)
    device = next(teacher.model.parameters()).device
    # Left padding keeps every sequence's last token at the end, so one `keep` covers them all.
    ids = torch.tensor([[0] * (width - len(x)) + x for _, x, _ in chunk], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for _, x, _ in chunk], device=device)
    logits = teacher.logits(ids, mask, width - 1)  # position j predicts token j + 1
    for row, (_, x, labels) in enumerate(chunk):
        pad = width - len(x)
        supervised = (torch.tensor(labels[1:]) != IGNORE).nonzero().squeeze(-1) + pad
        parts = []
        # The float32 log-softmax over the vocabulary, a slice of positions at a time: a long trace's whole
        # [tokens x vocabulary] in float32 would be the largest tensor of the run.
        for start in range(0, len(supervised), positions_at_once):
            picked = logits[row, supervised[start:start + positions_at_once].to(device)]
            values, top = torch.log_softmax(picked.float(), dim=-1).topk(k, dim=-1)
            parts.append((top.cpu(), values.cpu()))
        yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def write_store(examples: Iterable[tuple[str, list[int], list[int]]], teacher: Teacher, k: int, vocabulary: int,
                out: Path, identity: dict[str, Any], batch_size: int) -> TopKStore:
    """Score (key, ids, labels) examples and publish the store at `out` whole: written in a staging folder
    beside it and renamed into place, so a crash leaves the old store or none, never half of one."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    records: dict[str, list[int]] = {}
    rows, chunk = 0, []

    def flush() -> None:
        nonlocal rows
        for (key, _, _), (top, values) in zip(chunk, _teacher_topk(teacher, chunk, k)):
            ids_file.write(top.numpy().astype(id_dtype(vocabulary)).tobytes())
            lps_file.write(values.numpy().astype(LOGPROB_DTYPE).tobytes())
            records[key] = [rows, len(top)]
            rows += len(top)
        chunk.clear()

    with open(staging / "ids.bin", "wb") as ids_file, open(staging / "logprobs.bin", "wb") as lps_file:
        for example in examples:
            chunk.append(example)
            if len(chunk) == batch_size:
                flush()
        if chunk:
            flush()
    atomic_write_json(staging / INDEX, {
        "identity": identity, "k": k, "vocabulary": vocabulary, "id_dtype": id_dtype(vocabulary).name,
        "bytes_per_token": bytes_per_token(k, vocabulary), "tokens": rows, "records": records})
    publish_dir(staging, out)
    return TopKStore.open(out)


# ------------------------------------------------------------------------------------------------ inside sft
def check_teacher(config: SFTConfig, student_path: str) -> str:
    """Refuse, before any weights load, a teacher that does not tokenize as the student trains; returns the
    teacher's resolved path. The student's tokenizer is the one SFT trains with: a recipe's chat template may add
    turn tokens, which a teacher without them could never score."""
    from transformers import AutoTokenizer

    from distill.models import resolve_model
    from distill.sft.data import load_tokenizer

    if config.logit_kd.teacher is None:
        raise DistillError("sft.logit_kd.teacher is not set: name the teacher whose top-k log-probs the student "
                           "learns (hub id, folder or bundled:NAME, with the student's tokenizer)")
    teacher_path = resolve_model(config.logit_kd.teacher)
    check_tokenizers(teacher_path, student_path, section="sft.logit_kd")  # kd's check and its one paragraph
    trained = load_tokenizer(student_path, config.chat_template, tuple(config.chat_template_tokens))
    difference = first_difference(AutoTokenizer.from_pretrained(teacher_path), trained)
    if difference is not None:
        raise DistillError(
            f"sft.logit_kd: the student '{student_path}' in its training chat template (sft.chat_template="
            f"{config.chat_template!r}) no longer shares the teacher '{config.logit_kd.teacher}''s tokenizer: "
            f"{difference}. The teacher cannot score tokens its vocabulary lacks, so logit KD needs a template "
            "made of tokens both models have: use the teacher's own template (leave sft.chat_template unset), "
            "or remove sft.logit_kd and distil from the teacher's text alone.")
    return teacher_path


def store_identity(config: SFTConfig, teacher_path: str, student_path: str, dtype: torch.dtype) -> dict[str, Any]:
    """What a store's rows depend on: the traces, the teacher, k and the tokenization SFT uses."""
    from distill.sft.data import load_tokenizer

    tokenizer = load_tokenizer(student_path, config.chat_template, tuple(config.chat_template_tokens))
    teacher_files = Path(teacher_path)
    return {"train_file_digest": file_digest(Path(config.train_file)), "teacher": config.logit_kd.teacher,
            "teacher_files": stat_fingerprint(teacher_files) if teacher_files.exists() else teacher_path,
            "top_k": config.logit_kd.top_k, "teacher_dtype": str(dtype).removeprefix("torch."),
            "chat_template": tokenizer.chat_template, "vocabulary": len(tokenizer),
            "max_length": config.max_length, "overlong": config.overlong}


def _training_examples(config: SFTConfig, student_path: str) -> Iterator[tuple[str, list[int], list[int]]]:
    """(key, ids, labels) of every trace SFT trains or evaluates on, tokenized and cut exactly as it does."""
    from distill.records import trace_key
    from distill.sft.data import tokenized_traces

    rows = tokenized_traces(str(config.train_file), student_path, config.max_length, config.overlong, "",
                            config.chat_template, tuple(config.chat_template_tokens))
    for row in rows:
        if row["status"] in ("ok", "truncated"):
            yield trace_key(row["problem_id"], row["sample"]), row["input_ids"], row["labels"]


def ensure_store(config: SFTConfig, teacher_path: str, student_path: str, dtype: torch.dtype) -> tuple[TopKStore, dict]:
    """The store for this run (reused, or made now); and its figures with `reused` and the seconds it took."""
    out = Path(config.output_dir) / STORE
    identity = store_identity(config, teacher_path, student_path, dtype)
    started = time.perf_counter()
    if (out / INDEX).exists() and TopKStore.open(out).meta.get("identity") == identity:
        store = TopKStore.open(out)
        return store, {**store.figures(), "reused": True, "seconds": 0.0}
    from distill.sft.data import load_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    vocabulary = len(load_tokenizer(student_path, config.chat_template, tuple(config.chat_template_tokens)))
    k = config.logit_kd.top_k
    if k > vocabulary:
        raise DistillError(f"sft.logit_kd.top_k={k} is more than the teacher's {vocabulary} tokens")
    teacher = Teacher.load(teacher_path, dtype, device)
    try:
        store = write_store(_training_examples(config, student_path), teacher, k, vocabulary, out, identity,
                            config.logit_kd.batch_size)
    finally:
        del teacher
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return store, {**store.figures(), "reused": False, "seconds": round(time.perf_counter() - started, 2)}


# ------------------------------------------------------------------------------------------- on its own
def tokenized(traces: Path, tokenizer) -> list[tuple[str, dict[str, Any]]]:
    """(trace key, SFT example) for every trace: the ids and labels `distill sft` trains on."""
    from distill.jsonl import JsonlReader
    from distill.records import Trace
    from distill.sft.data import build_example

    rows = []
    for data in JsonlReader(Path(traces)):
        trace = Trace.model_validate(data)
        rows.append((trace.key, build_example(tokenizer, trace.prompt, trace.reasoning, trace.answer)))
    return rows


def store_topk(traces: Path, teacher_path: str, k: int, out: Path, *, batch_size: int = 8,
               dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Score every trace (in the teacher's own chat template) and store its top-k per supervised token at the
    folder `out`; returns the size figures."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    vocabulary = len(tokenizer)
    if k > vocabulary:
        raise DistillError(f"top_k={k} is more than the teacher's {vocabulary} tokens")
    examples = [(key, ex["input_ids"], ex["labels"]) for key, ex in tokenized(traces, tokenizer)]
    identity = {"traces": file_digest(Path(traces)), "teacher": teacher_path, "top_k": k}
    store = write_store(examples, Teacher.load(teacher_path, dtype), k, vocabulary, Path(out), identity, batch_size)
    return store.figures()


def example_loss(student_logits: torch.Tensor, example: dict[str, Any], store: Path, key: str,
                 alpha: float) -> torch.Tensor:
    """The KD/CE mix for one example. student_logits: [len(input_ids), V], the model's output for input_ids."""
    labels = torch.tensor(example["labels"][1:])
    supervised = (labels != IGNORE).nonzero().squeeze(-1)
    top_ids, top_lps = TopKStore.open(store).record(key)
    if len(top_ids) != len(supervised):
        raise DistillError(f"{store}: {key} holds {len(top_ids)} teacher positions for {len(supervised)} supervised "
                           "tokens: the store was made from other traces or another tokenizer")
    logits = student_logits[:-1][supervised]
    mask = torch.ones(len(supervised), device=logits.device)
    return kd_loss(logits, labels[supervised].to(logits.device), top_ids.to(logits.device),
                   top_lps.to(logits.device), mask, alpha)
