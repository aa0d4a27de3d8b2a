"""The teacher's side of distillation: same tokenizer as the student, and its log-probs of given token ids.

    check_tokenizers   teacher and student must tokenize alike, or every per-token comparison compares
                       different strings; checked from the tokenizer files alone, before any weights load
    Teacher            a frozen transformers model; `score` gives the log-prob of each given token,
                       `topk` the k most likely next tokens at each position (offline KD)
    pack_topk / unpack_topk   top-k rows in a compact binary form: ids as uint16 when the vocabulary fits
                       (else int32) and log-probs as float16, so k x 4 (or 6) bytes per token
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distill.errors import DistillError
from distill.kd.losses import token_logprobs

# Text the two tokenizers must split into the same ids: words, digits, LaTeX, code, whitespace runs, non-Latin.
PROBE = ("Let x = 3.14159; then \\boxed{2x^2} is 19.74.\n\n<think>\nStep 1: def f(n): return n * (n + 1) // 2\n"
         "</think>\n  Über naïve café — 数学 ∑ λ → ∞")


def _describe(tokenizer, path: str) -> str:
    name = getattr(tokenizer, "name_or_path", None) or path
    return f"'{name}' ({type(tokenizer).__name__}, {len(tokenizer):,} tokens)"


def first_difference(teacher_tok, student_tok) -> str | None:
    """None when both tokenizers map every id to the same token and split the probe text alike; else what differs."""
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    if t_vocab != s_vocab:
        t_by_id = {i: tok for tok, i in t_vocab.items()}
        s_by_id = {i: tok for tok, i in s_vocab.items()}
        for i in range(max(len(t_by_id), len(s_by_id), max(t_by_id, default=0) + 1, max(s_by_id, default=0) + 1)):
            if t_by_id.get(i) != s_by_id.get(i):
                return (f"token id {i} is {t_by_id.get(i)!r} for the teacher and {s_by_id.get(i)!r} for the student")
    t_ids = teacher_tok(PROBE, add_special_tokens=False)["input_ids"]
    s_ids = student_tok(PROBE, add_special_tokens=False)["input_ids"]
    for position, (a, b) in enumerate(zip(t_ids, s_ids)):
        if a != b:
            return (f"the same vocabulary splits text differently: token {position} of a probe text is "
                    f"{teacher_tok.convert_ids_to_tokens(a)!r} (id {a}) for the teacher and "
                    f"{student_tok.convert_ids_to_tokens(b)!r} (id {b}) for the student")
    if len(t_ids) != len(s_ids):
        return f"a probe text is {len(t_ids)} tokens for the teacher and {len(s_ids)} for the student"
    return None


TEXT_INSTEAD = {"kd": "distil from the teacher's text with `distill sft` instead",
                "sft.logit_kd": "drop sft.logit_kd and train on the teacher's text alone"}


def check_tokenizers(teacher_path: str, student_path: str, section: str = "kd") -> None:
    """Stop, before any weights load, when teacher and student do not share a tokenizer; `section` (kd or
    sft.logit_kd) is the recipe section the paragraph names."""
    from transformers import AutoTokenizer

    tokenizers = []
    for role, path in (("teacher", teacher_path), ("student", student_path)):
        try:
            tokenizers.append(AutoTokenizer.from_pretrained(path))
        except (OSError, ValueError) as exc:
            raise DistillError(f"cannot read the {role}'s tokenizer at '{path}': {exc}") from None
    teacher_tok, student_tok = tokenizers
    difference = first_difference(teacher_tok, student_tok)
    if difference is not None:
        raise DistillError(
            f"{section}: the teacher {_describe(teacher_tok, teacher_path)} and the student "
            f"{_describe(student_tok, student_path)} do not share a tokenizer: {difference}. Distilling log-probs "
            "compares the two models token by token, so both must tokenize alike: pick a teacher of the student's "
            f"family (same tokenizer), or {TEXT_INSTEAD[section]}.")


@dataclass
class Teacher:
    """A frozen teacher. All methods take right-aligned ids with an attention mask and explicit positions."""

    model: torch.nn.Module
    path: str

    @classmethod
    def load(cls, path: str, dtype: torch.dtype, device: torch.device | str = "cpu") -> Teacher:
        from transformers import AutoModelForCausalLM

        # Straight onto the device: a large teacher should never sit whole in host memory first.
        placement = {"device_map": {"": str(device)}} if str(device) != "cpu" else {}
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **placement)
        except OSError as exc:
            raise DistillError(f"cannot load the teacher '{path}': {exc}") from None
        model.eval().requires_grad_(False)
        model.config.use_cache = False
        return cls(model, path)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last `keep` + 1 positions, shifted: [B, keep, V], row j predicting input_ids[:, -keep + j]."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         logits_to_keep=keep + 1, use_cache=False)
        return out.logits[:, :-1]

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
        """The teacher's log-prob of each of the last `keep` tokens given everything before it: [B, keep]."""
        return token_logprobs(self.logits(input_ids, attention_mask, keep), input_ids[:, -keep:])

    @torch.no_grad()
    def topk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int,
             k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each of the last `keep` positions, the teacher's k likeliest tokens and their log-probs [B, keep, k]."""
        logprobs = torch.log_softmax(self.logits(input_ids, attention_mask, keep).float(), dim=-1)
        values, ids = logprobs.topk(k, dim=-1)
        return ids, values


# ------------------------------------------------------------------------------------ compact top-k storage
def id_dtype(vocabulary: int) -> np.dtype:
    return np.dtype(np.uint16) if vocabulary <= 1 << 16 else np.dtype(np.int32)


def bytes_per_token(k: int, vocabulary: int) -> int:
    return k * (id_dtype(vocabulary).itemsize + np.dtype(np.float16).itemsize)
