"""Packing without cross-contamination: several examples share a row, none attends to another.

Rows are filled best-fit-decreasing (TRL's `pack_dataset`, which keeps example boundaries) up to
`row_length`. Each row carries
`position_ids` that restart at 0 for every example and no `attention_mask`: transformers then derives a
block-diagonal causal mask from the position resets (sdpa/eager: `find_packed_sequence_indices`; flash
attention: varlen from the same resets). We keep one packed row per batch row instead of TRL's
padding-free flattening of the whole batch into one row, because on sdpa/eager the mask is materialized
and its cost grows with the square of the row length.

This only holds when the model is called without a KV cache (with one, transformers skips packed-sequence
detection and the examples silently see each other), and, for flash attention, only at a batch of one row:
transformers' flash path reads position resets as boundaries only when the batch has one row
(`_is_packed_sequence`), so at per_device_batch_size 2 it would run plain causal attention over each row and
its packed examples would see each other. For varlen kernels the collator therefore flattens the batch into
one row (TRL's padding-free layout, no padding at all), which is also what those kernels are fast at.
`check_packing` runs the model on a batch of two packed rows made by the trainer's own collator, on each
example alone, and on the same rows with positions that never restart (contamination), and refuses to train if the packed examples
sit closer to the contaminated run than to the alone one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from distill.errors import DistillError
from distill.hooks import attn_implementation

IGNORE = -100


# Attention kernels that take example boundaries as sequence offsets (cost per example, no mask built).
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn",
                    "kernels-community/flash-attn3", "kernels-community/vllm-flash-attn3")


def row_length(max_length: int, longest: int, attn_implementation: str) -> int:
    """How long a packed row may be.

    Varlen kernels cost what each example costs, so rows fill up to max_length. sdpa and eager build the
    block-diagonal mask for the whole row and compute every query-key pair in it, so a row longer than
    the longest example buys nothing but quadratic attention: measured on this CPU with SmolLM2 and eight
    GSM8K traces (152-420 tokens), one 1966-token row ran a step in 40 s, rows of at most 512 in 27 s, and
    TRL-style padded rows in 48 s. Rows are therefore capped at the longest example (rounded up to 64).
    """
    if attn_implementation in VARLEN_ATTENTION:
        return max_length
    return min(max_length, -(-longest // 64) * 64)


def pack(dataset, max_length: int, enabled: bool, num_proc: int | None = None):
    """Rows of input_ids/labels/seq_lengths: bins of whole examples (packing) or one example per row."""
    if not enabled:
        return dataset.map(lambda ids: {"seq_lengths": [len(ids)]}, input_columns="input_ids",
                           num_proc=num_proc, desc="one example per row")
    from trl.data_utils import pack_dataset

    # Examples are at most max_length already (the over-length policy ran), so "bfd" never truncates here.
    return pack_dataset(dataset, max_length, strategy="bfd", map_kwargs={"num_proc": num_proc})


def position_ids_for(seq_lengths: list[int], width: int) -> torch.Tensor:
    """0..n-1 for every example, then 0..k-1 over the padding so the padding is its own (masked) block."""
    parts = [torch.arange(n) for n in seq_lengths]
    used = sum(seq_lengths)
    if width > used:
        parts.append(torch.arange(width - used))
    return torch.cat(parts)


class TopKRows(Protocol):
    """The teacher's top-k store as the collator reads it (distill.kd.offline.TopKStore)."""

    def lookup(self, rows) -> tuple[torch.Tensor, torch.Tensor]: ...


# Columns that hold one value per token: packing concatenated them together, flattening does too.
TOKEN_COLUMNS = ("input_ids", "labels", "teacher_row")


@dataclass
class PackedCollator:
    """Pads rows to the longest in the batch; labels of padding and of each example's first token are -100.

    `flatten` (varlen attention kernels): the whole batch becomes one row, examples kept apart by position
    resets alone; see the module docstring for why a batch of several rows would not keep them apart there.
    The token counts are plain ints computed here on the CPU, so the trainer counts tokens without a device sync.

    `teacher` (offline logit KD): rows carry `teacher_row`, per token the row of the teacher's top-k store for
    that token's label; the batch gets `teacher_topk_ids` / `teacher_topk_logprobs` [M, k], one row per
    supervised position of the shifted labels (labels[:, 1:] != -100) in row-major order, which is the order
    `logits[:, :-1][mask]` reads the student's predictions in.
    """

    pad_token_id: int
    flatten: bool = False
    teacher: TopKRows | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if self.flatten and len(rows) > 1:
            columns = [c for c in TOKEN_COLUMNS if c in rows[0]]
            rows = [{**{c: [t for r in rows for t in r[c]] for c in columns},
                     "seq_lengths": [int(n) for r in rows for n in r["seq_lengths"]]}]
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row["labels"])
            lengths = [int(x) for x in row["seq_lengths"]]
            position_ids[i] = position_ids_for(lengths, width)
        # A label at an example's first position would be predicted from the previous example's last
        # token; prompts start examples so it is -100 already, this makes it a guarantee.
        labels[position_ids == 0] = IGNORE
        real = sum(int(sum(r["seq_lengths"])) for r in rows)
        batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
                 "num_real_tokens": real, "num_padded_tokens": input_ids.numel(),
                 "num_supervised_tokens": int((labels[:, 1:] != IGNORE).sum())}
        if self.teacher is not None and "teacher_row" in rows[0]:
            batch["teacher_topk_ids"], batch["teacher_topk_logprobs"] = self._teacher_topk(rows, labels, width)
        return batch

    def _teacher_topk(self, rows: list[dict[str, Any]], labels: torch.Tensor, width: int):
        store_rows = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, row in enumerate(rows):
            store_rows[i, :len(row["teacher_row"])] = torch.as_tensor(row["teacher_row"])
        wanted = store_rows[:, 1:][labels[:, 1:] != IGNORE]
        if bool((wanted < 0).any()):
            raise DistillError("a trained token has no teacher distribution in the batch: the teacher's top-k "
                               "store and the packed rows disagree (delete teacher_topk/ in the sft output folder to rebuild it)")
        return self.teacher.lookup(wanted.numpy())


def collator_for(pad_token_id: int, attn_implementation: str, teacher: TopKRows | None = None) -> PackedCollator:
    """The collator the trainer uses: one flattened row for varlen kernels, padded rows otherwise; with the
    teacher's top-k store under offline logit KD."""
    return PackedCollator(pad_token_id, flatten=attn_implementation in VARLEN_ATTENTION, teacher=teacher)


def padding_fraction(seq_lengths_column, per_device_batch_size: int) -> float:
    """Share of pad tokens if rows were batched in order (what a run of this data pays, roughly)."""
    rows = [int(sum(x)) for x in seq_lengths_column]
    padded = 0
    for start in range(0, len(rows), per_device_batch_size):
        chunk = rows[start:start + per_device_batch_size]
        padded += max(chunk) * len(chunk)
    return 1.0 - sum(rows) / padded if padded else 0.0


@torch.no_grad()
def check_packing(model, collator: PackedCollator | None = None,
                  device: torch.device | str | None = None) -> dict[str, float]:
    """Run a batch of two packed rows (two examples each) made by `collator`, each example alone, and the
    same rows with running positions (plain causal attention over each row); raise on a leak.

    Two rows, because the flash-attention path separates packed examples only in a batch of one row: a check
    on one row would pass where training at per_device_batch_size 2 contaminates. The plain-causal run is
    what contamination looks like for this model and precision, so the verdict is scale-free: the packed
    run must sit far closer to the alone run than the contaminated one does.
    """
    collator = collator or PackedCollator(pad_token_id=0)
    was_training = model.training
    model.eval()
    device = device or next(p.device for p in model.parameters())
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.get_text_config().vocab_size
    lengths = [[11, 7], [9, 6]]  # unequal rows: the second is padded unless the collator flattens
    examples = [[torch.randint(3, vocab, (n,), generator=generator) for n in row] for row in lengths]
    rows = [{"input_ids": torch.cat(row).tolist(), "labels": torch.cat(row).tolist(), "seq_lengths": list(ns)}
            for row, ns in zip(examples, lengths)]
    batch = collator(rows)
    ids, positions = batch["input_ids"].to(device), batch["position_ids"].to(device)
    # Where each example sits in the collated batch: (row, start) in order.
    spans, row_of, start = [], 0, 0
    for row_lengths in lengths:
        if not collator.flatten:
            start = 0
        for n in row_lengths:
            spans.append((row_of, start, n))
            start += n
        if not collator.flatten:
            row_of += 1
    flat = [e for row in examples for e in row]
    try:
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits.float()
        # Positions that never restart: no kernel sees a boundary, so later examples see earlier ones.
        running = torch.arange(ids.shape[1], device=device).expand_as(ids)
        leaky = model(input_ids=ids, position_ids=running, use_cache=False).logits.float()
        gap = leak = 0.0
        for (r, s, n), example in zip(spans, flat):
            alone = model(input_ids=example[None].to(device), use_cache=False).logits[0].float()
            gap = max(gap, (packed[r, s:s + n] - alone).abs().max().item())
            leak = max(leak, (leaky[r, s:s + n] - alone).abs().max().item())
    finally:
        model.train(was_training)
    if gap > 0.1 * leak:
        raise DistillError(
            f"packed examples attend to each other with attn_implementation="
            f"'{attn_implementation(model)}' at a batch of {ids.shape[0]} row(s) (logit gap {gap:.3g}, "
            f"a leak gives {leak:.3g}); set sft.packing=false")
    return {"packed_vs_alone": gap, "contaminated_vs_alone": leak, "rows": int(ids.shape[0])}
