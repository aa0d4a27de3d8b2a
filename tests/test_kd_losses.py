"""The distillation losses against their exact references, on fixed logits (no model: milliseconds)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill.kd.losses import (
    exact_reverse_kl,
    generalized_jsd,
    kd_loss,
    kl_estimate,
    policy_gradient_loss,
    reverse_kl_advantage,
    token_logprobs,
    topk_forward_kl,
)
from distill.kd.teacher import bytes_per_token, id_dtype

V = 64


def logits_pair(seed: int = 0, positions: int = 5, spread: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(positions, V, generator=g) * spread
    teacher = student + torch.randn(positions, V, generator=g) * 0.7
    return student, teacher


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_estimator_expectation_is_the_exact_reverse_kl(estimator):
    """E_{x~s}[k(x)] summed exactly over the vocabulary equals KL(s || t), and a Monte Carlo mean agrees."""
    student, teacher = logits_pair()
    s, t = F.log_softmax(student, -1), F.log_softmax(teacher, -1)
    exact = exact_reverse_kl(student, teacher)
    per_token = kl_estimate(s, t, estimator)                   # every vocabulary entry as if sampled
    assert torch.allclose((s.exp() * per_token).sum(-1), exact, atol=1e-5)

    g = torch.Generator().manual_seed(1)
    draws = torch.multinomial(s.exp(), 200_000, replacement=True, generator=g)   # [positions, N]
    k = kl_estimate(s.gather(-1, draws), t.gather(-1, draws), estimator)
    stderr = k.std(-1) / k.shape[-1] ** 0.5
    assert torch.all((k.mean(-1) - exact).abs() < 4 * stderr + 1e-4)


def test_k3_has_lower_variance_than_k1_near_the_teacher():
    student, _ = logits_pair()
    teacher = student + 0.1 * torch.randn(student.shape, generator=torch.Generator().manual_seed(3))
    s, t = F.log_softmax(student, -1), F.log_softmax(teacher, -1)
    p = s.exp()

    def variance(est):
        k = kl_estimate(s, t, est)
        mean = (p * k).sum(-1, keepdim=True)
        return (p * (k - mean) ** 2).sum(-1)

    assert torch.all(variance("k3") < variance("k1"))
    assert torch.all(kl_estimate(s, t, "k3") >= -1e-7)  # k3 is never negative


def test_reverse_kl_advantage_gives_the_exact_reverse_kl_gradient():
    """Weighting every token by its probability (the expectation the sampler estimates), the policy-gradient
    loss with the k1 advantage has exactly the gradient of KL(s || t)."""
    student, teacher = logits_pair(seed=4)
    a = student.clone().requires_grad_(True)
    exact_reverse_kl(a, teacher).sum().backward()

    b = student.clone().requires_grad_(True)
    s = F.log_softmax(b, -1)
    advantage = reverse_kl_advantage(s, F.log_softmax(teacher, -1), estimator="k1")
    weights = s.detach().exp()
    # -sum_x s(x) A(x) grad log s(x)  ==  the expectation of policy_gradient_loss's gradient over samples x ~ s
    (-(weights * torch.exp(s - s.detach()) * advantage).sum()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_policy_gradient_loss_is_minus_the_masked_mean_advantage():
    lp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 2.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss = policy_gradient_loss(lp, adv, mask)
    assert loss.item() == pytest.approx(-1.5)
    loss.backward()
    assert lp.grad.tolist() == [[-0.5, -1.0, 0.0]]


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_matches_trl(beta):
    from trl.experimental.gkd import GKDTrainer

    student, teacher = logits_pair(seed=5)
    ours = generalized_jsd(student, teacher, beta=beta, temperature=0.8)
    trl = GKDTrainer.generalized_jsd_loss(student[None], teacher[None], beta=beta, temperature=0.8,
                                          reduction="none").sum(-1)[0]
    assert torch.allclose(ours, trl, atol=1e-6)
    if beta == 1.0:
        assert torch.allclose(ours, exact_reverse_kl(student / 0.8, teacher / 0.8), atol=1e-6)


def test_topk_forward_kl_with_k_equal_to_the_vocabulary_is_exact():
    student, teacher = logits_pair(seed=6, positions=7)
    t = F.log_softmax(teacher, -1)
    values, ids = t.topk(V, dim=-1)
    exact = generalized_jsd(student, teacher, beta=0.0)   # KL(t || s)
    assert torch.allclose(topk_forward_kl(student, ids, values), exact, atol=1e-5)
    # With fewer tokens, the tail bucket merges the rest: a coarser partition can only lower the KL.
    for k in (1, 4, 16):
        partial = topk_forward_kl(student, ids[:, :k], values[:, :k])
        assert torch.all(partial <= exact + 1e-6) and torch.all(partial >= -1e-6)


def test_teacher_equal_to_student_gives_zero_loss_and_zero_gradient():
    student, _ = logits_pair(seed=7)
    mask = torch.ones(student.shape[0])
    for estimator in ("k1", "k3"):
        x = student.clone().requires_grad_(True)
        lp = F.log_softmax(x, -1)[:, :1].squeeze(-1)   # a "sampled" token per position
        adv = reverse_kl_advantage(lp, lp.detach(), estimator=estimator)
        loss = policy_gradient_loss(lp, adv, mask)
        loss.backward()
        assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0
    for beta in (0.0, 0.5, 1.0):
        x = student.clone().requires_grad_(True)
        loss = generalized_jsd(x, student, beta=beta).mean()
        loss.backward()
        assert abs(loss.item()) < 1e-6 and x.grad.abs().max() < 1e-6
    x = student.clone().requires_grad_(True)
    values, ids = F.log_softmax(student, -1).topk(8, dim=-1)
    loss = kd_loss(x, ids[:, 0], ids, values, mask, alpha=1.0)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and x.grad.abs().max() < 1e-6


def test_kd_loss_mixes_kl_and_cross_entropy_by_alpha():
    student, teacher = logits_pair(seed=8)
    values, ids = F.log_softmax(teacher, -1).topk(8, dim=-1)
    labels = torch.arange(student.shape[0])
    mask = torch.ones(student.shape[0])
    ce = F.cross_entropy(student, labels)
    kl = topk_forward_kl(student, ids, values).mean()
    assert kd_loss(student, labels, ids, values, mask, alpha=0.0).item() == pytest.approx(ce.item(), abs=1e-6)
    assert kd_loss(student, labels, ids, values, mask, alpha=0.3).item() == pytest.approx(
        0.3 * kl.item() + 0.7 * ce.item(), abs=1e-6)


def test_token_logprobs_is_the_gathered_log_softmax():
    student, _ = logits_pair(seed=9)
    ids = torch.tensor([0, 5, 63, 7, 1])
    assert torch.allclose(token_logprobs(student, ids), F.log_softmax(student, -1)[torch.arange(5), ids], atol=1e-6)


@pytest.mark.parametrize("vocabulary,width", [(49_152, 4), (65_536, 4), (65_537, 6), (262_144, 6)])
def test_topk_store_widths(vocabulary, width):
    """uint16 ids while the vocabulary fits them, else int32; float16 log-probs: 4k or 6k bytes a token."""
    assert bytes_per_token(20, vocabulary) == 20 * width
    assert id_dtype(vocabulary).itemsize == width - 2
