"""The divergences distillation trains on, per token, with their exact references.

On-policy (the student samples, the teacher scores the sampled tokens):

    reverse KL   KL(s || t) = E_{x~s}[log s(x) - log t(x)]. Only the sampled token's two log-probs are known, so
                 the KL is estimated from them (Schulman's estimators, as tinker-cookbook and verl):
                     k1 = log s - log t                 unbiased, can be negative per token
                     k3 = (r - 1) - log r, r = t / s    unbiased, never negative, lower variance near s = t
                 and trained on as a policy-gradient advantage A = -coef * k (no gradient through k):
                     loss = -mean_t A_t * log s(x_t)
                 whose expectation is exactly the gradient of the reverse KL for k1 (since E_s[grad log s] = 0).
    generalized JSD  TRL's (GKD, Agarwal et al. 2024) over the full vocabulary: beta 0 = forward KL,
                 1 = reverse KL, between = JSD against the mixture (1 - beta) s + beta t. Needs both models'
                 full logits at every completion position.

Offline (the teacher's top-k log-probs stored with its traces):

    top-k forward KL  KL(t || s) over the k stored tokens plus one bucket for the rest of the vocabulary (the
                 tail mass 1 - sum of the k probabilities, for teacher and student alike). With k = vocabulary
                 it is the exact forward KL. Mixed with the cross-entropy on the trace's tokens by alpha.

Every function takes log-probabilities (or logits where it says so) and a 0/1 mask of the tokens that count,
and returns a token mean over the mask, or per-token values.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Estimator = Literal["k1", "k3"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


# ------------------------------------------------------------------------------------------- on-policy
def kl_estimate(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor,
                estimator: Estimator = "k1") -> torch.Tensor:
    """Per-token estimate of KL(s || t) from the sampled token's log-probs under each model."""
    log_ratio = student_logprobs - teacher_logprobs  # log s - log t
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        # (r - 1) - log r with log r = -log_ratio; expm1 keeps precision when s and t nearly agree.
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; expected k1 or k3")


def reverse_kl_advantage(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, *,
                         estimator: Estimator = "k1", coef: float = 1.0) -> torch.Tensor:
    """The per-token advantage -coef * k: a token the teacher finds likelier than the student did is pushed up.
    Detached: the KL estimate is the reward, not a path for gradients."""
    return -coef * kl_estimate(student_logprobs.detach(), teacher_logprobs.detach(), estimator)


def policy_gradient_loss(student_logprobs: torch.Tensor, advantages: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """-mean A * ratio with ratio = exp(log s - sg(log s)) = 1: on-policy, its gradient is -mean A * grad log s
    (the importance-sampling form tinker-cookbook uses, exact here since the sampler is the current policy)."""
    ratio = torch.exp(student_logprobs - student_logprobs.detach())
    return -masked_mean(ratio * advantages, mask)


def exact_reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(s || t) over the whole vocabulary (the quantity the estimators estimate)."""
    s = F.log_softmax(student_logits.float(), dim=-1)
    t = F.log_softmax(teacher_logits.float(), dim=-1)
    return (s.exp() * (s - t)).sum(-1)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5,
                    temperature: float = 1.0) -> torch.Tensor:
    """Per-position generalized JSD, as TRL's GKD defines it (beta 0: KL(t || s); 1: KL(s || t))."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if beta == 0:
        return (t.exp() * (t - s)).sum(-1)
    if beta == 1:
        return (s.exp() * (s - t)).sum(-1)
    b = torch.tensor(beta, dtype=s.dtype, device=s.device)
    mixture = torch.logsumexp(torch.stack([s + torch.log1p(-b), t + torch.log(b)]), dim=0)
    kl_teacher = (t.exp() * (t - mixture)).sum(-1)
    kl_student = (s.exp() * (s - mixture)).sum(-1)
    return beta * kl_teacher + (1 - beta) * kl_student


# --------------------------------------------------------------------------------------------- offline
def _tail_log_mass(topk_logprobs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(topk))): the log-probability of every token outside the k, clamped at float32's floor
    (with k = vocabulary the tail is empty up to rounding)."""
    head = torch.logsumexp(topk_logprobs, dim=-1)
    return torch.log(torch.clamp(-torch.expm1(head), min=torch.finfo(torch.float32).tiny))


def topk_forward_kl(student_logits: torch.Tensor, topk_ids: torch.Tensor,
                    topk_teacher_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-position KL(t || s) over the teacher's k stored tokens plus the tail bucket.

    student_logits [..., V]; topk_ids [..., k] (int); topk_teacher_logprobs [..., k]. Rounding of the stored
    teacher log-probs (fp16 on disk) can make their mass exceed 1 by a hair; the tail then counts as empty."""
    return _topk_kl(F.log_softmax(student_logits.float(), dim=-1), topk_ids, topk_teacher_logprobs)


def _topk_kl(student_logprobs: torch.Tensor, topk_ids: torch.Tensor, topk_teacher_logprobs: torch.Tensor) -> torch.Tensor:
    s_top = student_logprobs.gather(-1, topk_ids.long())
    t_top = topk_teacher_logprobs.float()
    head = (t_top.exp() * (t_top - s_top)).sum(-1)
    t_tail, s_tail = _tail_log_mass(t_top), _tail_log_mass(s_top)
    tail = t_tail.exp() * (t_tail - s_tail)
    return head + tail


def kd_terms(student_logits: torch.Tensor, labels: torch.Tensor, topk_ids: torch.Tensor,
             topk_teacher_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position, the top-k forward KL and the cross-entropy of the label, from one float32 log-softmax (the
    [tokens x vocabulary] tensor SFT's KD step holds once, not twice). kd_loss is their alpha-mix."""
    log_probs = F.log_softmax(student_logits.float(), dim=-1)
    kl = _topk_kl(log_probs, topk_ids, topk_teacher_logprobs)
    nll = -log_probs.gather(-1, labels.long().clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return kl, nll


def kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, topk_ids: torch.Tensor,
            topk_teacher_logprobs: torch.Tensor, mask: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """alpha * top-k forward KL + (1 - alpha) * cross-entropy on the trace's own tokens, token means over mask.

    All tensors are aligned per position: student_logits[..., i, :] predicts labels[..., i], whose teacher
    distribution is (topk_ids, topk_teacher_logprobs)[..., i, :]."""
    kl, nll = kd_terms(student_logits, labels, topk_ids, topk_teacher_logprobs)
    if alpha >= 1:
        return masked_mean(kl, mask)
    return alpha * masked_mean(kl, mask) + (1 - alpha) * masked_mean(nll, mask)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[ids] without keeping a second [.., V] tensor of log-probs: logit - logsumexp."""
    logits = logits.float()
    return logits.gather(-1, ids.long().unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
