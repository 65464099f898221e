"""Adam (Kingma & Ba, 2015) for the fine-tuning loop, without ``torch.optim``'s start-up cost.

Why not :class:`torch.optim.Adam`: constructing any ``torch.optim`` optimizer imports
``torch._dynamo`` (its ``__init__`` is wrapped to disable the compiler), which costs 1.5-3 s
per process on the project machine (measured 2026-11-29, torch 2.13 CPU). ``topofix
correct`` makes one optimizer per scan and a CLI run is often one process for a handful of
scans, so that import was the largest single cost of correcting one 2D slice. The update
is the textbook one, identical to ``torch.optim.Adam``'s default (no AMSGrad, no weight
decay, bias-corrected moments, ``eps`` added to the corrected second moment's root); the
tests compare the two trajectories.

Only what the loop uses is provided: ``param_groups`` (the escalation rule changes
``"lr"``), ``state``, :meth:`zero_grad` and :meth:`step`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Adam"]


class Adam:
    """Adam over ``parameters``; ``betas``/``eps`` as in :class:`torch.optim.Adam`."""

    def __init__(self, parameters: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        params = list(parameters)
        if not params:
            raise ValueError("Adam got no parameters")
        if lr <= 0 or eps <= 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid Adam settings: lr={lr}, betas={betas}, eps={eps}")
        self.param_groups: list[dict[str, Any]] = [{"params": params, "lr": lr, "betas": tuple(betas), "eps": eps}]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": 0, "exp_avg": torch.zeros_like(p),
                                             "exp_avg_sq": torch.zeros_like(p)}
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1 = 1 - beta1 ** t
                bias2 = 1 - beta2 ** t
                denom = (v.sqrt() / bias2 ** 0.5).add_(eps)
                p.addcdiv_(m, denom, value=-lr / bias1)
