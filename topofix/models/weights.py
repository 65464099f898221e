"""Start every scan from the original weights: snapshot, restore, fresh optimizer.

topofix fine-tunes one network on many scans, each from the *same* starting
point.  Reloading the file for every scan is slow, and ``copy.deepcopy`` of a
ScriptModule returns non-leaf parameters (Adam refuses them).  Instead::

    snapshot = WeightsSnapshot(model)        # once, after loading
    for scan in scans:
        snapshot.restore()                   # bit-identical original weights
        optimizer = fresh_optimizer(model, lr=1e-4)
        ...fine-tune on scan...

:class:`WeightsSnapshot` keeps a copy of every parameter **and buffer**
(batch-norm running statistics and ``num_batches_tracked`` change during a
train-mode forward) and of each submodule's train/eval flag; :meth:`restore`
copies them back in place with ``copy_`` (exact, whatever the dtype), clears
the gradients, and resets the modes.  The parameters stay the same tensor
objects, so anything holding them (a ``torch.compile`` cache, a hook) stays
valid; the optimizer must be new, or Adam's moments leak from one scan to
the next: :func:`fresh_optimizer`.
"""

from __future__ import annotations

import copy

import torch

from topofix.models.adam import Adam
from topofix.models.loading import make_trainable

__all__ = ["WeightsSnapshot", "clone_module", "fresh_optimizer"]


class WeightsSnapshot:
    """The parameters, buffers and train/eval modes of ``module``, by value.

    Tensors are looked up again by name at :meth:`restore`, so a module that
    *replaces* a buffer (rather than updating it in place) is restored too.
    The copies live on the tensors' own devices.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        with torch.no_grad():
            self._parameters = {
                name: tensor.detach().clone() for name, tensor in module.named_parameters(remove_duplicate=False)
            }
            self._buffers = {
                name: tensor.detach().clone() for name, tensor in module.named_buffers(remove_duplicate=False)
            }
        self._modes = {name: sub.training for name, sub in module.named_modules(remove_duplicate=False)}

    @property
    def nbytes(self) -> int:
        """Memory held by the copies."""
        tensors = list(self._parameters.values()) + list(self._buffers.values())
        return sum(t.numel() * t.element_size() for t in tensors)

    def restore(self) -> None:
        """Copy the saved values back in place (bit-identical); clear gradients; reset modes."""
        module = self.module
        live_parameters = dict(module.named_parameters(remove_duplicate=False))
        live_buffers = dict(module.named_buffers(remove_duplicate=False))
        if live_parameters.keys() != self._parameters.keys() or live_buffers.keys() != self._buffers.keys():
            raise RuntimeError("WeightsSnapshot.restore: the module's parameters or buffers changed names")
        with torch.no_grad():
            for saved, live in ((self._parameters, live_parameters), (self._buffers, live_buffers)):
                for name, value in saved.items():
                    tensor = live[name]
                    if tensor.shape != value.shape or tensor.dtype != value.dtype:
                        raise RuntimeError(f"WeightsSnapshot.restore: {name} changed shape or dtype")
                    tensor.copy_(value)
        for tensor in live_parameters.values():
            tensor.grad = None
        for name, sub in module.named_modules(remove_duplicate=False):
            mode = self._modes.get(name)
            if mode is not None and sub.training != mode:
                sub.training = mode


def fresh_optimizer(module: torch.nn.Module, lr: float, **kwargs) -> Adam:
    """A new Adam over the trainable parameters of ``module`` (no state from earlier scans).

    ``kwargs`` go to :class:`topofix.models.adam.Adam` (``betas``, ``eps``): the update of
    :class:`torch.optim.Adam`, without its seconds-long first construction (see that module).
    """
    parameters = [p for p in module.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the module has no trainable parameters")
    return Adam(parameters, lr=lr, **kwargs)


def clone_module(module: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of ``module`` whose parameters are trainable leaves.

    ``copy.deepcopy`` alone gives a ScriptModule non-leaf parameters.
    """
    clone = copy.deepcopy(module)
    make_trainable(clone)
    return clone
