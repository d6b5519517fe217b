"""Optimisers: one per entry of an algorithm's ``owners()``, with the fast-path flags."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pipeline.core.hyper import Hyper

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
}
CRITIC = "d"
"""The optimiser that ``Hyper.lr_d`` (a critic learning rate of its own, TTUR) applies to."""


def optimizer_options(name: str, device_type: str, fast: bool) -> dict[str, Any]:
    """Implementation flags: fused kernels where the optimiser has them (Adam does, on CUDA
    and CPU; RMSprop does not), foreach otherwise; the per-parameter for-loop when ``fast``
    is off. Same update rule either way (float32; rounding may differ in the last bits)."""
    if not fast:
        return {"foreach": False}
    if device_type in ("cuda", "cpu") and "fused" in inspect.signature(OPTIMIZERS[name]).parameters:
        return {"fused": True}
    return {"foreach": True}


def make_optimizer(
    hyper: Hyper,
    params: list[nn.Parameter] | nn.Module,
    device: torch.device,
    fast: bool,
    *,
    lr: float | None = None,
) -> torch.optim.Optimizer:
    if isinstance(params, nn.Module):
        params = list(params.parameters())
    kwargs: dict[str, Any] = {
        "lr": hyper.lr if lr is None else lr,
        **optimizer_options(hyper.optimizer, device.type, fast),
    }
    if hyper.optimizer == "adam":
        kwargs["betas"] = tuple(hyper.betas)
    return OPTIMIZERS[hyper.optimizer](params, **kwargs)


def make_optimizers(
    hyper: Hyper,
    nets: Mapping[str, nn.Module],
    owners: Mapping[str, tuple[str, ...]],
    device: torch.device,
    fast: bool,
) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per owner entry, over its nets' parameters (in the order given)."""
    out = {}
    for name, owned in owners.items():
        params = [p for n in owned for p in nets[n].parameters()]
        lr = hyper.lr_d if name == CRITIC and hyper.lr_d is not None else None
        out[name] = make_optimizer(hyper, params, device, fast, lr=lr)
    return out


def portable(opt_state: dict[str, Any]) -> dict[str, Any]:
    """An optimiser state dict without the ``capturable`` flag that CUDA graphs set (it is
    not part of the algorithm; an eager resume should not inherit the slower code path)."""
    for group in opt_state["param_groups"]:  # state_dict() copies the group dicts
        if group.get("capturable"):
            group["capturable"] = False
    return opt_state
