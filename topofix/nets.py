"""A small U-Net, the reference network of topofix's demo, tests and benchmarks.

topofix corrects the user's own network; it ships no model for production use.
This one exists so that the demo segmenter, the tests (TorchScript, tracing,
ONNX export) and the benchmarks all use the same plain, exportable
architecture: convolutions, batch norm, ReLU, max-pooling and transposed
convolutions only (every op converts with onnx2torch at opset 17).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _block(dims: int, cin: int, cout: int) -> nn.Sequential:
    conv = _conv(dims)
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    return nn.Sequential(
        conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
        conv(cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """U-Net with ``depth`` poolings; input sides must be multiples of ``2**depth``.

    Parameters
    ----------
    in_channels, out_channels:
        Image channels in; classes out (logits: apply sigmoid for 1 channel,
        softmax for more).
    base:
        Channels of the first level, doubled at each level.
    depth:
        Number of down-sampling steps.
    dims:
        2 or 3.

    ``SmallUNet(1, 4, base=16, depth=4)`` has about 1.9 M parameters in 2D.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, base: int = 16, depth: int = 3,
                 dims: int = 2) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError("dims must be 2 or 3")
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        up = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(_block(dims, cin, w))
            cin = w
        self.pool = pool(2)
        self.bottom = _block(dims, widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_low, w in zip(widths[:0:-1], widths[-2::-1]):
            self.up.append(up(w_low, w, 2, stride=2))
            self.merge.append(_block(dims, 2 * w, w))
        self.head = _conv(dims)(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        level = len(skips)
        for up, merge in zip(self.up, self.merge):  # TorchScript: no reversed(), index instead
            level -= 1
            x = merge(torch.cat([up(x), skips[level]], dim=1))
        return self.head(x)
