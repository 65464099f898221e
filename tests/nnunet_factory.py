"""Tiny nnU-Net v2 trained-model folders, built in the tests (needs nnunetv2).

A trained-model folder as ``nnUNetv2_train`` leaves it (``plans.json``, ``dataset.json``,
``fold_X/checkpoint_final.pth``), with hand-written plans for a tiny ``PlainConvUNet``
(2 stages, 4 and 8 features) so that building and training take a second. The checkpoint is
the dict nnU-Net's ``nnUNetTrainer.save_checkpoint`` writes, with the same kinds of values
(network and optimizer state, a logger with numpy float64 entries, the init arguments with a
``torch.device``).

The network learns to follow the image intensity on ring scenes with faint gaps
(:mod:`correct_models`): its prediction of a ring with a faint gap is broken, with a gap
probability the correction can push.
"""

from __future__ import annotations

import json
from pathlib import Path

import correct_models as cm
import numpy as np
import torch
import torch.nn.functional as F

ARCH = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def _configuration(patch: list[int], spacing: list[float]) -> dict:
    dims = len(patch)
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dims}d"
    conv = f"torch.nn.modules.conv.Conv{dims}d"
    return {
        "data_identifier": f"nnUNetPlans_{dims}d", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": patch, "median_image_size_in_voxels": patch, "spacing": spacing,
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": ARCH,
            "arch_kwargs": {
                "n_stages": 2, "features_per_stage": [4, 8], "conv_op": conv,
                "kernel_sizes": [[3] * dims, [3] * dims], "strides": [[1] * dims, [2] * dims],
                "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
                "norm_op": norm, "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": True,
    }


def plans(dims: int, spacing: list[float], patch: list[int], transpose: list[int] | None = None) -> dict:
    """plans.json with one configuration, ``2d`` or ``3d_fullres``, of the tiny U-Net."""
    name = "2d" if dims == 2 else "3d_fullres"
    transpose = transpose or [0, 1, 2]
    backward = [transpose.index(i) for i in range(3)]
    return {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, 32, 32],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": transpose, "transpose_backward": backward,
        "configurations": {name: _configuration(patch, spacing)},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 1.0, "mean": 0.5, "median": 0.5, "min": 0.0, "percentile_00_5": 0.0,
                  "percentile_99_5": 1.0, "std": 0.2}},
    }


def dataset_json(labels: dict[str, int] | None = None) -> dict:
    return {"channel_names": {"0": "MRI"}, "labels": labels or {"background": 0, "ring": 1},
            "numTraining": 1, "file_ending": ".nii.gz"}


def build_network(plans_dict: dict, dataset: dict, configuration: str, deep_supervision: bool = False):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans_dict)
    conf = manager.get_configuration(configuration)
    n_out = manager.get_label_manager(dataset).num_segmentation_heads
    return get_network_from_plans(conf.network_arch_class_name, conf.network_arch_init_kwargs,
                                  conf.network_arch_init_kwargs_req_import, 1, n_out,
                                  deep_supervision=deep_supervision)


def train_ring(net: torch.nn.Module, dims: int, seed: int = 0, steps: int = 120) -> torch.nn.Module:
    """Fit ``net`` (2 output channels) to follow the intensity of ring (2D) / ball (3D) scenes."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    scenes = [cm._random_ring(rng, heart=False) if dims == 2 else cm._random_ball(rng) for _ in range(64)]
    images = torch.from_numpy(np.stack([s[1] for s in scenes])[:, None]).float()
    fg = torch.from_numpy(np.stack([cm.sigmoid_targets(s[0]) for s in scenes])).float()
    targets = torch.stack([1 - fg, fg], 1)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    with cm.one_thread():
        net.train()
        for _ in range(steps):
            index = torch.randint(0, images.shape[0], (8,), generator=generator)
            optimizer.zero_grad()
            loss = -(targets[index] * F.log_softmax(net(images[index]), 1)).sum(1).mean()
            loss.backward()
            optimizer.step()
    net.eval()
    return net


def checkpoint(net: torch.nn.Module, plans_dict: dict, dataset: dict, configuration: str, fold: int,
               mirror_axes: tuple[int, ...]) -> dict:
    """What ``nnUNetTrainer.save_checkpoint`` stores (same keys, same kinds of values)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    net(torch.zeros((1, 1) + (8,) * (len(mirror_axes)))).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    logging = {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)],
               "dice_per_class_or_region": [[np.float64(0.5)]], "train_losses": [0.1], "val_losses": [0.2],
               "lrs": [0.01], "epoch_start_timestamps": [1.0], "epoch_end_timestamps": [2.0]}
    return {
        "network_weights": net.state_dict(), "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None, "logging": logging, "_best_ema": np.float64(0.5), "current_epoch": 1,
        "init_args": {"plans": plans_dict, "configuration": configuration, "fold": fold,
                      "dataset_json": dataset, "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": mirror_axes,
    }


def model_folder(root: Path, dims: int, *, folds: tuple[int, ...] = (0,), spacing: list[float] | None = None,
                 patch: list[int] | None = None, transpose: list[int] | None = None, seed: int = 0,
                 steps: int = 120) -> Path:
    """``root/nnUNetTrainer__nnUNetPlans__<configuration>`` with trained tiny networks, one per fold."""
    configuration = "2d" if dims == 2 else "3d_fullres"
    spacing = spacing or [1.0] * dims
    patch = patch or [32] * dims if dims == 2 else patch or [16] * 3
    plans_dict = plans(dims, spacing, patch, transpose)
    dataset = dataset_json()
    folder = root / f"nnUNetTrainer__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans_dict, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for i, fold in enumerate(folds):
        torch.manual_seed(seed + i)
        net = train_ring(build_network(plans_dict, dataset, configuration), dims, seed=seed + i, steps=steps)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint(net, plans_dict, dataset, configuration, fold, tuple(range(dims))),
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder
