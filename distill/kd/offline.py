"""Offline logit KD: the teacher's top-k log-probabilities over the very tokens SFT trains on, stored once, then
a forward-KL term beside SFT's cross-entropy.

    store_topk(traces, teacher, k, out)    one transformers forward of the teacher per batch of traces; for every
                                           supervised token (the labels `distill sft` builds) its k likeliest
                                           next tokens and their log-probs, packed (ids uint16/int32, log-probs
                                           float16) into out, indexed by trace key in out.json
    example_loss(logits, example, store)   alpha x top-k forward KL (plus tail) + (1 - alpha) x CE for one
                                           tokenized example, aligned as SFT's shifted labels

Scoring the traces a teacher already wrote (rather than keeping logprobs while it generates) lets any trace
file, imported ones included, be distilled at the logit level, as long as the teacher that scores it shares
the student's tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from distill.errors import DistillError
from distill.kd.losses import kd_loss
from distill.kd.teacher import Teacher, TopKWriter, bytes_per_token, read_topk

IGNORE = -100


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
    """Score every trace with the teacher and store its top-k per supervised token; returns the size figures."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    vocabulary = len(tokenizer)
    if k > vocabulary:
        raise DistillError(f"kd.offline.top_k={k} is more than the teacher's {vocabulary} tokens")
    examples = tokenized(traces, tokenizer)
    teacher = Teacher.load(teacher_path, dtype)
    out = Path(out)
    out.unlink(missing_ok=True)
    writer = TopKWriter(out, k, vocabulary)
    tokens = written = 0
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            width = max(len(ex["input_ids"]) for _, ex in chunk)
            # Left padding keeps every sequence's last token at the end, so one `keep` covers them all.
            ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(ex["input_ids"])) + ex["input_ids"]
                                for _, ex in chunk])
            mask = torch.tensor([[0] * (width - len(ex["input_ids"])) + [1] * len(ex["input_ids"]) for _, ex in chunk])
            top_ids, top_lps = teacher.topk(ids, mask, width - 1, k)   # row j predicts token j + 1
            for row, (key, ex) in enumerate(chunk):
                pad = width - len(ex["input_ids"])
                labels = torch.tensor(ex["labels"][1:])
                supervised = (labels != IGNORE).nonzero().squeeze(-1) + pad
                written += writer.add(key, top_ids[row, supervised], top_lps[row, supervised])
                tokens += len(supervised)
    finally:
        writer.close()
    return {"traces": len(examples), "tokens": tokens, "bytes": written, "k": k, "vocabulary": vocabulary,
            "bytes_per_token": bytes_per_token(k, vocabulary), "path": str(out)}


def example_loss(student_logits: torch.Tensor, example: dict[str, Any], store: Path, key: str,
                 alpha: float) -> torch.Tensor:
    """The KD/CE mix for one example. student_logits: [len(input_ids), V], the model's output for input_ids."""
    labels = torch.tensor(example["labels"][1:])
    supervised = (labels != IGNORE).nonzero().squeeze(-1)
    top_ids, top_lps = read_topk(store, key)
    if len(top_ids) != len(supervised):
        raise DistillError(f"{store}: {key} holds {len(top_ids)} teacher positions for {len(supervised)} supervised "
                           "tokens: the store was made from other traces or another tokenizer")
    logits = student_logits[:-1][supervised]
    mask = torch.ones(len(supervised), device=logits.device)
    return kd_loss(logits, labels[supervised].to(logits.device), top_ids.to(logits.device),
                   top_lps.to(logits.device), mask, alpha)
