"""Spatial Mixture-of-Experts operators compiled with Halide, as torch.ops.smoe.*.

Importing this package loads the operator library (libsmoe_ops.so) into PyTorch. The library is
looked up in $SMOE_LIBRARY, then inside the package (as `pip install` puts it), then in the build
tree this package was copied into (build/python/smoe -> build/lib/libsmoe_ops.so).
"""
import os
import pathlib

import torch

__all__ = ["library_path", "route_topk", "route_topk_indices", "forward", "spatial_moe", "error_quantile", "rc_loss",
           "tuned_kernels", "set_tuned_kernels",
           "kernel_variants", "set_kernel_variant", "kernel_choice_cache", "bf16_dot_products",
           "TensorRoutingGate",
           "SpatialMoE2d", "WeatherResNet"]


def library_path() -> str:
    explicit = os.environ.get("SMOE_LIBRARY")
    if explicit:
        return explicit
    here = pathlib.Path(__file__).resolve().parent
    installed = here / "libsmoe_ops.so"
    if installed.exists():
        return str(installed)
    return str(here.parent.parent / "lib" / "libsmoe_ops.so")


torch.ops.load_library(library_path())

route_topk = torch.ops.smoe.route_topk
route_topk_indices = torch.ops.smoe.route_topk_indices
forward = torch.ops.smoe.forward
spatial_moe = torch.ops.smoe.spatial_moe
error_quantile = torch.ops.smoe.error_quantile
rc_loss = torch.ops.smoe.rc_loss
tuned_kernels = torch.ops.smoe.tuned_kernels
set_tuned_kernels = torch.ops.smoe.set_tuned_kernels
kernel_variants = torch.ops.smoe.kernel_variants
set_kernel_variant = torch.ops.smoe.set_kernel_variant
kernel_choice_cache = torch.ops.smoe.kernel_choice_cache
bf16_dot_products = torch.ops.smoe.bf16_dot_products

from .nn import SpatialMoE2d, TensorRoutingGate, WeatherResNet  # noqa: E402  (needs the ops loaded)
