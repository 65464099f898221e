"""Tiny trained networks whose predictions really break topology, for the ``correct`` tests.

An untrained network's output is noise; a correction test needs a network that
segments well *except* where the image is ambiguous, so that its prediction is
broken on purpose and can be fixed with a few gradient steps.  The networks here
learn to follow the image intensity:

* synthetic scenes (rings, rings around a disc, balls) with random faint gaps
  and faint extra blobs, Gaussian noise, normalised per image (z-score: what
  ``--normalize zscore`` does, so an image stored in any affine intensity scale,
  PNG included, gives the network the same input);
* **soft targets**: the probability of a class is a smooth function of the
  clean intensity (a logistic of width 0.08 around 0.5 for the sigmoid models),
  so a faint gap of intensity 0.4 comes out at about 0.2-0.3, not at 0: the
  persistence bar of the broken loop has a length the loss can push (a gap at
  probability ~0 gives a bar of length ~0, whose squared-form gradient ``2 * length``
  vanishes: such rings are often left open);
* a few hundred Adam steps on 32x32 (2D) or 16^3 (3D) scenes, one thread, fixed
  seeds: deterministic on one machine, seconds of training.

:func:`build_models` trains them once (a session fixture calls it) and saves
each as TorchScript (scripted and traced) and ONNX (opset 17).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import model_factory as mf
import numpy as np
import torch
import torch.nn.functional as F

from topofix.nets import SmallUNet

SIZE_2D = 32
SIZE_3D = 16
SOFT_WIDTH = 0.08  # width of the logistic that turns the clean intensity into a target probability
HEART_LEVELS = (0.0, 1.0, 0.5)  # intensity of class 0 (background), 1 (MYO ring), 2 (LV disc)


# --------------------------------------------------------------------------- scenes


def _zscore(image: np.ndarray) -> np.ndarray:
    return ((image - image.mean()) / image.std()).astype(np.float32)


def _noisy(clean: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return clean + rng.normal(0.0, noise, clean.shape)


def ring_scene(
    *,
    size: int = SIZE_2D,
    center: tuple[float, float] | None = None,
    radius: float = 8.0,
    width: float = 2.0,
    gap: float | None = None,
    gap_angle: float = 0.0,
    gap_half_width: float = 1.5,
    blob: float | None = None,
    blob_at: tuple[float, float] = (4.0, 26.0),
    blob_radius: float = 2.0,
    disc: float | None = None,
    ring: float = 1.0,
    noise: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(clean intensity, noisy z-scored image)`` of a ring (intensity ``ring``) of mid
    radius ``radius`` and half-width ``width``; ``gap``: a stretch of the ring at angle
    ``gap_angle`` painted with that intensity; ``blob``: a disc at ``blob_at`` painted
    with that intensity; ``disc``: the inside of the ring painted with that intensity
    (the LV of :func:`heart_targets`)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = center if center is not None else (size / 2 - 0.5, size / 2 - 0.5)
    r = np.hypot(y - cy, x - cx)
    theta = np.arctan2(y - cy, x - cx)
    clean = np.zeros((size, size))
    if disc is not None:
        clean[r < radius - width] = disc
    clean[np.abs(r - radius) <= width] = ring
    if gap is not None:
        along = np.abs(np.angle(np.exp(1j * (theta - gap_angle)))) * radius
        clean[(np.abs(r - radius) <= width + 0.5) & (along <= gap_half_width)] = gap
    if blob is not None:
        clean[np.hypot(y - blob_at[0], x - blob_at[1]) <= blob_radius] = blob
    return clean, _zscore(_noisy(clean, noise, rng))


def ball_scene(
    *,
    size: int = SIZE_3D,
    center: tuple[float, float, float] | None = None,
    radius: float = 4.5,
    blob: float | None = None,
    blob_at: tuple[float, float, float] = (3.0, 3.0, 12.0),
    blob_radius: float = 2.0,
    inner: float | None = None,
    hole: float | None = None,
    hole_radius: float = 1.5,
    noise: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy z-scored)`` 3D volume: a solid ball of intensity 1 and, with
    ``blob``, a small ball of that intensity elsewhere; ``inner``: hollow, a shell
    around a cavity of that radius; ``hole``: a patch of the shell (on the +x side,
    ``hole_radius`` wide) painted with that intensity."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float64)
    c = center if center is not None else (size / 2 - 0.5,) * 3
    clean = np.zeros((size,) * 3)
    r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    clean[r <= radius] = 1.0
    if inner is not None:
        clean[r < inner] = 0.0
        if hole is not None:
            patch = (r <= radius + 0.5) & (r >= inner - 0.5) & (x > c[2])
            patch &= np.hypot(z - c[0], y - c[1]) <= hole_radius
            clean[patch] = hole
    if blob is not None:
        d = np.sqrt((z - blob_at[0]) ** 2 + (y - blob_at[1]) ** 2 + (x - blob_at[2]) ** 2)
        clean[d <= blob_radius] = blob
    return clean, _zscore(_noisy(clean, noise, rng))


def sigmoid_targets(clean: np.ndarray) -> np.ndarray:
    """P(foreground): a logistic of the clean intensity around 0.5."""
    return (1.0 / (1.0 + np.exp(-(clean - 0.5) / SOFT_WIDTH))).astype(np.float32)


def heart_targets(clean: np.ndarray) -> np.ndarray:
    """``(3, ...)`` class probabilities: a softmax of minus the squared distance of the
    clean intensity to each class's level (:data:`HEART_LEVELS`)."""
    levels = np.asarray(HEART_LEVELS).reshape((-1,) + (1,) * clean.ndim)
    logits = -((clean[None] - levels) ** 2) / (2 * 0.1**2)
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def _random_ring(rng: np.random.Generator, heart: bool) -> tuple[np.ndarray, np.ndarray]:
    kwargs = {
        "center": tuple(SIZE_2D / 2 - 0.5 + rng.uniform(-2.5, 2.5, 2)),
        "radius": rng.uniform(6.5, 9.5),
        "width": rng.uniform(1.5, 2.3),
        "gap": rng.uniform(0.0, 1.0) if rng.random() < 0.6 else None,
        "gap_angle": rng.uniform(-np.pi, np.pi),
        "gap_half_width": rng.uniform(1.0, 2.5),
        "seed": int(rng.integers(1 << 30)),
    }
    if heart:
        kwargs["disc"] = HEART_LEVELS[2]
    if rng.random() < 0.6:
        kwargs["blob"] = rng.uniform(0.0, 1.0)
        kwargs["blob_at"] = tuple(rng.choice([rng.uniform(1, 6), rng.uniform(26, 31)]) for _ in range(2))
        kwargs["blob_radius"] = rng.uniform(1.3, 2.6)
    if rng.random() < 0.1:  # an empty scene now and then (slices beyond the heart)
        kwargs.update(ring=0.0, gap=None, blob=None, disc=None)
    return ring_scene(**kwargs)


def _random_ball(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    corner = [rng.choice([rng.uniform(1.5, 4), rng.uniform(11.5, 14)]) for _ in range(3)]
    return ball_scene(
        center=tuple(SIZE_3D / 2 - 0.5 + rng.uniform(-1.5, 1.5, 3)),
        radius=rng.uniform(3.5, 5.0),
        blob=rng.uniform(0.0, 1.0) if rng.random() < 0.7 else None,
        blob_at=tuple(corner),
        blob_radius=rng.uniform(1.2, 2.2),
        seed=int(rng.integers(1 << 30)),
    )


# --------------------------------------------------------------------------- training


@contextlib.contextmanager
def one_thread():
    """Training and the tests' expectations do not depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(net: torch.nn.Module, images: np.ndarray, targets: np.ndarray, *, steps: int, batch: int,
          lr: float = 1e-2, seed: int = 0) -> torch.nn.Module:
    """Adam on soft targets (BCE for one channel, soft cross-entropy for more); eval mode after."""
    x = torch.from_numpy(images[:, None])
    y = torch.from_numpy(targets if targets.ndim == images.ndim + 1 else targets[:, None])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        index = torch.randint(0, x.shape[0], (batch,), generator=generator)
        out = net(x[index])
        if out.shape[1] == 1:
            loss = F.binary_cross_entropy_with_logits(out, y[index])
        else:
            loss = -(y[index] * F.log_softmax(out, dim=1)).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def ring_net(seed: int = 0, steps: int = 150) -> SmallUNet:
    """2D, one sigmoid channel: P(ring) follows the intensity."""
    rng = np.random.default_rng(seed)
    scenes = [_random_ring(rng, heart=False) for _ in range(384)]
    images = np.stack([s[1] for s in scenes])
    targets = np.stack([sigmoid_targets(s[0]) for s in scenes])
    with one_thread():
        torch.manual_seed(seed)
        return train(SmallUNet(1, 1, base=4, depth=2), images, targets, steps=steps, batch=12, seed=seed)


def heart_net(seed: int = 0, steps: int = 150) -> SmallUNet:
    """2D, three softmax channels: 0 background, 1 ring (MYO), 2 inner disc (LV)."""
    rng = np.random.default_rng(seed + 1)
    scenes = [_random_ring(rng, heart=True) for _ in range(384)]
    images = np.stack([s[1] for s in scenes])
    targets = np.stack([heart_targets(s[0]) for s in scenes])
    with one_thread():
        torch.manual_seed(seed)
        return train(SmallUNet(1, 3, base=4, depth=2), images, targets, steps=steps, batch=12, seed=seed)


def ball_net(seed: int = 0, steps: int = 120) -> SmallUNet:
    """3D, one sigmoid channel, one pooling (inputs: even sides)."""
    rng = np.random.default_rng(seed + 2)
    scenes = [_random_ball(rng) for _ in range(128)]
    images = np.stack([s[1] for s in scenes])
    targets = np.stack([sigmoid_targets(s[0]) for s in scenes])
    with one_thread():
        torch.manual_seed(seed)
        return train(SmallUNet(1, 1, base=4, depth=1, dims=3), images, targets, steps=steps, batch=4, seed=seed)


# --------------------------------------------------------------------------- files


@dataclass
class Models:
    """The trained networks (eval mode) and their files."""

    ring: SmallUNet
    heart: SmallUNet
    ball: SmallUNet
    files: dict[str, Path]


def build_models(folder: Path) -> Models:
    """Train the three networks and save them: ``ring_scripted.pt``, ``ring_traced.pt``,
    ``ring.onnx``, ``heart_scripted.pt``, ``heart.onnx``, ``ball_scripted.pt``, ``ball_traced.pt``,
    ``ball.onnx``."""
    folder = Path(folder)
    ring, heart, ball = ring_net(), heart_net(), ball_net()
    x2 = torch.zeros(1, 1, SIZE_2D, SIZE_2D)
    x3 = torch.zeros(1, 1, SIZE_3D, SIZE_3D, SIZE_3D)
    files = {
        "ring_scripted": mf.save_scripted(folder, name="ring_scripted.pt", model=ring),
        "ring_traced": _save_traced(folder / "ring_traced.pt", ring, x2),
        "ring_onnx": mf.export_onnx(folder, ring, x2, name="ring.onnx"),
        "heart_scripted": mf.save_scripted(folder, name="heart_scripted.pt", model=heart),
        "heart_onnx": mf.export_onnx(folder, heart, x2, name="heart.onnx"),
        "ball_scripted": mf.save_scripted(folder, name="ball_scripted.pt", model=ball),
        "ball_traced": _save_traced(folder / "ball_traced.pt", ball, x3),
        "ball_onnx": mf.export_onnx(folder, ball, x3, name="ball.onnx"),
    }
    return Models(ring, heart, ball, files)


def _save_traced(path: Path, model: torch.nn.Module, example: torch.Tensor) -> Path:
    with mf.quiet():
        torch.jit.save(torch.jit.trace(model.eval(), example, check_trace=False), str(path))
    return path


_CACHE: dict[str, Models] = {}


def shared_models(tmp_path_factory) -> Models:
    """:func:`build_models` once per test session (both test modules use the same networks)."""
    if "models" not in _CACHE:
        _CACHE["models"] = build_models(tmp_path_factory.mktemp("correct_models"))
    return _CACHE["models"]


def as_png_pixels(image: np.ndarray) -> np.ndarray:
    """``image`` mapped affinely onto uint8 (what a PNG scan holds; z-scoring undoes the mapping)."""
    lo, hi = float(image.min()), float(image.max())
    return np.round((image - lo) / (hi - lo) * 255).astype(np.uint8)


def background_like(reference_clean: np.ndarray, reference_image: np.ndarray, seed: int) -> np.ndarray:
    """An empty slice in the intensity scale of a z-scored scene: the scene's background
    level and noise (what a slice beyond the object looks like when the stack is not
    normalised as a whole)."""
    rng = np.random.default_rng(seed)
    background = reference_image[reference_clean == 0]
    return (background.mean() + rng.normal(0.0, background.std(), reference_clean.shape)).astype(np.float32)
