import math

import pytest
import torch

from easyedit_split.training.objectives import dpo_loss, ref_violation_loss, reps_loss, sft_loss, split_loss

W = torch.tensor([1.0, 2.0, 0.5])
L = torch.tensor([3.0, 1.0, 0.7])


def logsig(x):
    return -math.log1p(math.exp(-x))


def test_sft_is_mean_of_winner():
    assert sft_loss(W).item() == pytest.approx((1.0 + 2.0 + 0.5) / 3)


def test_split_hand_computed():
    # rows: margin L-W = 2.0, -1.0, 0.2 ; theta 0.5 -> hinge 0, 1.5, 0.3
    lp, ln, g, th = 1.0, 0.5, 4.0, 0.5
    rows = [lp * w + ln * l + g * max(0.0, th - (l - w)) for w, l in zip(W.tolist(), L.tolist())]
    assert split_loss(W, L, lp, ln, g, th).item() == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_split_with_zero_neg_and_margin_equals_sft():
    w, lo = torch.rand(7) * 5, torch.rand(7) * 5
    assert torch.allclose(split_loss(w, lo, 1.0, 0.0, 0.0, 0.5), sft_loss(w))


def test_reps_reference_free_hand_computed():
    rows = [-logsig(l - w) for w, l in zip(W.tolist(), L.tolist())]
    assert reps_loss(W, L).item() == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_reps_reference_scale_and_beta_gamma():
    rw, rl = torch.tensor([4.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 1.9])
    # scale = max(2*(rw-rl), 1) = 6, 1, 1
    scales = [6.0, 1.0, 1.0]
    rows = [-logsig(0.5 * (l - s * w) - 0.1) for w, l, s in zip(W.tolist(), L.tolist(), scales)]
    got = reps_loss(W, L, rw, rl, beta=0.5, gamma=0.1, scaler=2.0)
    assert got.item() == pytest.approx(sum(rows) / 3, rel=1e-6)
    with pytest.raises(ValueError):
        reps_loss(W, L, rw, None)


def test_dpo_hand_computed():
    rw, rl = torch.tensor([1.5, 2.0, 0.4]), torch.tensor([2.5, 1.2, 0.9])
    rows = [-logsig(0.1 * ((a - w) - (b - l))) for w, l, a, b in zip(W.tolist(), L.tolist(), rw.tolist(), rl.tolist())]
    assert dpo_loss(W, L, rw, rl, beta=0.1).item() == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_dpo_is_zero_gradient_free_at_reference_with_log2():
    # at the reference the DPO logit is 0, so the loss is log 2 whatever beta is
    assert dpo_loss(W, L, W, L, beta=0.7).item() == pytest.approx(math.log(2))


def test_ref_violation():
    rw, rl = torch.tensor([0.5, 3.0, 0.5]), torch.tensor([3.0, 0.0, 0.7])
    rows = [max(0, w - a) + max(0, l - b) for w, l, a, b in zip(W.tolist(), L.tolist(), rw.tolist(), rl.tolist())]
    assert ref_violation_loss(W, L, rw, rl).item() == pytest.approx(sum(rows) / 3)


def test_split_gradient_directions():
    w = torch.tensor([1.0], requires_grad=True)
    lo = torch.tensor([1.2], requires_grad=True)
    split_loss(w, lo, 1.0, 0.5, 4.0, 0.5).backward()
    # inside the hinge: d/dw = 1 + 4, d/dl = 0.5 - 4
    assert w.grad.item() == pytest.approx(5.0)
    assert lo.grad.item() == pytest.approx(-3.5)


def test_every_trained_method_of_the_table_has_an_objective_loss():
    from easyedit_split.training.objectives import OBJECTIVES
    from easyedit_split.training.trainer import OBJECTIVE_LOSSES, compute_objective

    assert set(OBJECTIVES) == set(OBJECTIVE_LOSSES)
    with pytest.raises(ValueError, match="unknown objective 'kto'; known: "):
        compute_objective("kto", None, torch.zeros(2), torch.zeros(2))
