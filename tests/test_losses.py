"""Each loss equals its formula on hand-made log-probs."""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from mlx_dpo.config import LOSS_TYPES, LossConfig
from mlx_dpo.losses import per_pair_losses, preference_loss

# Two pairs: policy/reference log-prob sums and completion lengths.
PC, PR, RC, RR = [-10.0, -4.0], [-12.0, -3.0], [-11.0, -5.0], [-11.5, -2.0]
LC, LR = [5.0, 2.0], [6.0, 3.0]
BETA = 0.3


def ls(x):  # log sigmoid
    return -math.log1p(math.exp(-x))


def sig(x):
    return 1 / (1 + math.exp(-x))


def expected(kind: str, i: int, eps: float = 0.0, lam: float = 50.0, delta: float = 0.0) -> float:
    uc, ur = PC[i] - RC[i], PR[i] - RR[i]
    h = uc - ur
    b = BETA
    return {
        "sigmoid": -(1 - eps) * ls(b * h) - eps * ls(-b * h),
        "robust": (-(1 - eps) * ls(b * h) + eps * ls(-b * h)) / (1 - 2 * eps),
        "hinge": max(0.0, 1 - b * h),
        "ipo": (uc / LC[i] - ur / LR[i] - 1 / (2 * b)) ** 2,
        "dpop": -ls(b * (h - lam * max(0.0, RC[i] - PC[i]))),
        "sppo_hard": (uc - 0.5 / b) ** 2 + (ur + 0.5 / b) ** 2,
        "nca_pair": -ls(b * uc) - 0.5 * ls(-b * uc) - 0.5 * ls(-b * ur),
        "bco_pair": -ls(b * uc - delta) - ls(-(b * ur - delta)),
        "apo_zero": (1 - sig(b * uc)) + sig(b * ur),
        "apo_down": sig(b * uc) + (1 - sig(b * h)),
        "sigmoid_norm": -ls(b * (uc / LC[i] - ur / LR[i])),
    }[kind]


def losses(kind: str, **kw) -> list[float]:
    delta = kw.pop("delta", 0.0)
    cfg = LossConfig(loss_type=kind, beta=BETA, **kw)
    out = per_pair_losses(*(mx.array(v) for v in (PC, PR, RC, RR, LC, LR)), cfg, bco_delta=delta)
    return out.tolist()


@pytest.mark.parametrize("kind", [k for k in LOSS_TYPES if k != "sft"])
def test_loss_matches_formula(kind):
    got = losses(kind)
    assert got == pytest.approx([expected(kind, 0), expected(kind, 1)], rel=1e-5, abs=1e-6)


def test_label_smoothing_and_dpop_lambda_and_bco_delta():
    assert losses("sigmoid", label_smoothing=0.2) == pytest.approx([expected("sigmoid", i, eps=0.2) for i in (0, 1)], rel=1e-5)
    assert losses("robust", label_smoothing=0.2) == pytest.approx([expected("robust", i, eps=0.2) for i in (0, 1)], rel=1e-5)
    assert losses("dpop", dpop_lambda=2.0) == pytest.approx([expected("dpop", i, lam=2.0) for i in (0, 1)], rel=1e-5)
    assert losses("bco_pair", delta=0.4) == pytest.approx([expected("bco_pair", i, delta=0.4) for i in (0, 1)], rel=1e-5)


def test_sigmoid_at_equal_policy_and_reference_is_ln2():
    same = mx.array([-3.0, -7.0])
    loss, metrics = preference_loss(same, same, same, same, mx.array([2, 3]), mx.array([2, 3]), LossConfig())
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert metrics["rewards/accuracies"].item() == 0.0  # strict: ties do not count


def test_metrics_and_sft_weight():
    cfg = LossConfig(beta=BETA, sft_weight=0.5)
    arrays = [mx.array(v) for v in (PC, PR, RC, RR, LC, LR)]
    loss, m = preference_loss(*arrays, cfg)
    nll = -sum(PC) / sum(LC)
    dpo = sum(expected("sigmoid", i) for i in (0, 1)) / 2
    assert loss.item() == pytest.approx(dpo + 0.5 * nll, rel=1e-6)
    rc = [BETA * (PC[i] - RC[i]) for i in (0, 1)]
    rr = [BETA * (PR[i] - RR[i]) for i in (0, 1)]
    assert m["rewards/chosen"].item() == pytest.approx(sum(rc) / 2, rel=1e-6)
    assert m["rewards/rejected"].item() == pytest.approx(sum(rr) / 2, rel=1e-6)
    assert m["rewards/margins"].item() == pytest.approx((sum(rc) - sum(rr)) / 2, rel=1e-6)
    assert m["rewards/accuracies"].item() == sum(c > r for c, r in zip(rc, rr)) / 2
    assert m["kl/chosen"].item() == pytest.approx(sum(p - r for p, r in zip(PC, RC)) / sum(LC), rel=1e-6)
    assert m["kl/rejected"].item() == pytest.approx(sum(p - r for p, r in zip(PR, RR)) / sum(LR), rel=1e-6)
    assert m["logps/chosen"].item() == pytest.approx(sum(PC) / 2)


def test_sft_loss_is_chosen_nll_and_needs_no_reference():
    arrays = [mx.array(PC), mx.array(PR), None, None, mx.array(LC), mx.array(LR)]
    loss, _ = preference_loss(*arrays, LossConfig(loss_type="sft"))
    assert loss.item() == pytest.approx(-sum(PC) / sum(LC), rel=1e-6)


def test_gradient_of_sigmoid_matches_closed_form():
    """d/dpc of -log s(b h) is -b (1 - s(b h))."""
    cfg = LossConfig(beta=BETA)
    rest = [mx.array(v) for v in (PR, RC, RR, LC, LR)]
    grad = mx.grad(lambda pc: per_pair_losses(pc, *rest, cfg).sum())(mx.array(PC))
    for i in (0, 1):
        h = (PC[i] - RC[i]) - (PR[i] - RR[i])
        assert grad[i].item() == pytest.approx(-BETA * (1 - sig(BETA * h)), rel=1e-5)
