"""topofix's Adam against torch.optim.Adam (the oracle): the same trajectory, step by step."""

from __future__ import annotations

import pytest
import torch

from topofix.models.adam import Adam


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize("lr,betas", [(1e-3, (0.9, 0.999)), (1e-1, (0.8, 0.9))])
def test_trajectory_matches_torch_adam(lr, betas):
    ours, theirs = _net(), _net()
    opt_ours = Adam(ours.parameters(), lr=lr, betas=betas)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=lr, betas=betas)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for step in range(25):
        for net, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad(set_to_none=True)
            loss = (net(x) - 0.5).square().mean() + 0.1 * net(x).abs().mean()
            loss.backward()
            if step == 10:  # a learning-rate change mid-way, as the escalation rule does
                for group in opt.param_groups:
                    group["lr"] *= 10
            opt.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_parameters_without_gradient_are_left_alone():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    opt = Adam([a, b], lr=0.1)
    (a * 2).sum().backward()
    opt.step()
    assert torch.equal(b, torch.ones(3)) and not torch.equal(a, torch.ones(3))
    assert b not in opt.state and opt.state[a]["step"] == 1


def test_zero_grad_clears_or_zeroes():
    a = torch.nn.Parameter(torch.ones(2))
    opt = Adam([a])
    a.sum().backward()
    opt.zero_grad(set_to_none=False)
    assert torch.equal(a.grad, torch.zeros(2))
    opt.zero_grad()
    assert a.grad is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Adam([], lr=1e-3)
    with pytest.raises(ValueError):
        Adam([torch.nn.Parameter(torch.ones(1))], lr=-1.0)
