"""Preference losses: arrays in, arrays out. No model, no state.

All log-probs are per-sequence SUMS over completion tokens; `*_len` are the
completion token counts. With u_c = logpi(y_w) - logref(y_w),
u_r = logpi(y_l) - logref(y_l) and h = u_c - u_r, the definitions follow
TRL's DPOTrainer so users can carry their settings over.
"""

from __future__ import annotations

from typing import Optional

import mlx.core as mx
import mlx.nn as nn

from .config import LossConfig

log_sigmoid = nn.log_sigmoid


def per_pair_losses(policy_chosen: mx.array, policy_rejected: mx.array, ref_chosen: mx.array,
                    ref_rejected: mx.array, chosen_len: mx.array, rejected_len: mx.array,
                    cfg: LossConfig, bco_delta: float | mx.array = 0.0) -> mx.array:
    """One loss value per pair (shape (B,)), before the mean and any SFT term."""
    beta, eps, kind = cfg.beta, cfg.label_smoothing, cfg.loss_type
    u_c = policy_chosen - ref_chosen
    u_r = policy_rejected - ref_rejected
    h = u_c - u_r
    if kind == "sigmoid":
        # With label smoothing this is cDPO; with eps = 0, -log s(beta h).
        return -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
    if kind == "robust":
        return (-(1 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)) / (1 - 2 * eps)
    if kind == "hinge":
        return nn.relu(1 - beta * h)
    if kind == "ipo":
        return (u_c / chosen_len - u_r / rejected_len - 1 / (2 * beta)) ** 2
    if kind == "dpop":
        penalty = mx.maximum(0, ref_chosen - policy_chosen)
        return -log_sigmoid(beta * (h - cfg.dpop_lambda * penalty))
    if kind == "sppo_hard":
        return (u_c - 0.5 / beta) ** 2 + (u_r + 0.5 / beta) ** 2
    if kind == "nca_pair":
        return -log_sigmoid(beta * u_c) - 0.5 * log_sigmoid(-beta * u_c) - 0.5 * log_sigmoid(-beta * u_r)
    if kind == "bco_pair":
        return -log_sigmoid(beta * u_c - bco_delta) - log_sigmoid(-(beta * u_r - bco_delta))
    if kind == "apo_zero":
        return (1 - mx.sigmoid(beta * u_c)) + mx.sigmoid(beta * u_r)
    if kind == "apo_down":
        return mx.sigmoid(beta * u_c) + (1 - mx.sigmoid(beta * h))
    if kind == "sigmoid_norm":
        return -log_sigmoid(beta * (u_c / chosen_len - u_r / rejected_len))
    if kind == "sft":
        return mx.zeros_like(u_c)
    raise ValueError(f"unknown loss type {kind!r}")


def chosen_nll(policy_chosen: mx.array, chosen_len: mx.array) -> mx.array:
    """Mean negative log-likelihood per chosen completion token (RPO's SFT term)."""
    return -policy_chosen.sum() / mx.maximum(chosen_len.sum(), 1)


def preference_loss(policy_chosen: mx.array, policy_rejected: mx.array, ref_chosen: Optional[mx.array],
                    ref_rejected: Optional[mx.array], chosen_len: mx.array, rejected_len: mx.array,
                    cfg: LossConfig, bco_delta: float | mx.array = 0.0) -> tuple[mx.array, dict[str, mx.array]]:
    """Scalar loss and the per-step metrics, named as TRL names them.

    For `sft` the reference may be None (it is not needed); the reward
    metrics are then reported against a zero reference.
    """
    if ref_chosen is None:
        ref_chosen, ref_rejected = mx.zeros_like(policy_chosen), mx.zeros_like(policy_rejected)
    ref_chosen, ref_rejected = mx.stop_gradient(ref_chosen), mx.stop_gradient(ref_rejected)
    chosen_len = chosen_len.astype(mx.float32)
    rejected_len = rejected_len.astype(mx.float32)
    nll = chosen_nll(policy_chosen, chosen_len)
    if cfg.loss_type == "sft":
        loss = nll
    else:
        loss = per_pair_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_len,
                               rejected_len, cfg, bco_delta).mean()
        if cfg.sft_weight:
            loss = loss + cfg.sft_weight * nll
    reward_c = mx.stop_gradient(cfg.beta * (policy_chosen - ref_chosen))
    reward_r = mx.stop_gradient(cfg.beta * (policy_rejected - ref_rejected))
    metrics = {
        "loss": loss,
        "rewards/chosen": reward_c.mean(),
        "rewards/rejected": reward_r.mean(),
        "rewards/margins": (reward_c - reward_r).mean(),
        "rewards/accuracies": (reward_c > reward_r).astype(mx.float32).mean(),
        "logps/chosen": mx.stop_gradient(policy_chosen).mean(),
        "logps/rejected": mx.stop_gradient(policy_rejected).mean(),
        # Chosen more likely than rejected outright: the only accuracy a model without a reference has.
        "logps/accuracies": (policy_chosen > policy_rejected).astype(mx.float32).mean(),
        "ref_logps/chosen": ref_chosen.mean(),
        "ref_logps/rejected": ref_rejected.mean(),
        "kl/chosen": mx.stop_gradient(policy_chosen - ref_chosen).sum() / chosen_len.sum(),
        "kl/rejected": mx.stop_gradient(policy_rejected - ref_rejected).sum() / rejected_len.sum(),
        "nll/chosen": mx.stop_gradient(nll),
    }
    return loss, metrics
