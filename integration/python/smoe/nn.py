"""torch.nn modules over torch.ops.smoe: the tensor routing gate and the SMoE convolution."""
import math

import torch
from torch import nn

__all__ = ["TensorRoutingGate", "SpatialMoE2d"]


class TensorRoutingGate(nn.Module):
    """The paper's tensor routing: a learned score per (expert, grid point), [NE, H, W].

    Scores start uniform in +-sqrt(3*NE/E). One gate may feed several SpatialMoE2d layers on the
    same grid; their gradients add up in ``routing``.
    """

    def __init__(self, experts, selected, height, width):
        super().__init__()
        if not 1 <= selected <= experts:
            raise ValueError(f"TensorRoutingGate: need 1 <= selected <= experts, got {selected} and {experts}")
        self.experts = experts
        self.selected = selected
        self.routing = nn.Parameter(torch.empty(experts, height, width))
        self.reset_parameters()

    def _bound(self):
        return math.sqrt(3.0 * self.experts / self.selected)

    def reset_parameters(self):
        nn.init.uniform_(self.routing, -self._bound(), self._bound())

    @torch.no_grad()
    def init_from_class_map(self, class_map, classes):
        """Route class k of ``class_map`` ([H, W] integers) to its own block of NE/classes experts."""
        if class_map.shape != self.routing.shape[1:]:
            raise ValueError(f"class_map must have the grid's shape {tuple(self.routing.shape[1:])}, "
                             f"got {tuple(class_map.shape)}")
        if not 1 <= classes <= self.experts:
            raise ValueError(f"classes must be in 1 .. {self.experts}, got {classes}")
        labels = class_map.to(self.routing.device, torch.long)
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(f"class_map holds labels outside 0 .. {classes - 1}")
        block = torch.arange(self.experts, device=labels.device) * classes // self.experts
        in_block = block.view(-1, 1, 1) == labels.unsqueeze(0)
        self.routing.copy_(torch.where(in_block, self._bound(), -self._bound()))


class SpatialMoE2d(nn.Module):
    """SMoE convolution: a bank of NE experts (a Conv2d(C, NE*F, K) weight), E selected per point.

    ``forward(x)`` returns y [B, E*F, H, W]; the experts used are kept in ``last_indices``.

    Training follows the paper by default: the gate learns from the RC loss (``rc_loss``,
    ``rc_weight``, quantile ``q``) and the experts' error is damped by ``damping`` at misrouted
    points (None: no damping). ``error_scale`` defaults to numel(dy)/2; set ``loss_scale`` to the
    AMP loss scale when using one. After a backward, ``last_rc_loss`` holds the RC loss (0-d).
    """

    def __init__(self, in_channels, gate, kernel_size=3, out_per_expert=1, weighted=False, rc_loss=True,
                 rc_weight=1.0, quantile=0.7, damping=0.1, error_scale=None, loss_scale=1.0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"SpatialMoE2d: kernel_size must be odd, got {kernel_size}")
        if in_channels < 1 or out_per_expert < 1:
            raise ValueError(f"SpatialMoE2d: in_channels and out_per_expert must be >= 1, got {in_channels} and "
                             f"{out_per_expert}")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"SpatialMoE2d: quantile must lie in [0, 1], got {quantile}")
        if damping is not None and not 0.0 <= damping <= 1.0:
            raise ValueError(f"SpatialMoE2d: damping must lie in [0, 1] (or be None), got {damping}")
        if rc_loss and gate.experts == gate.selected:
            raise ValueError(f"SpatialMoE2d: the RC loss needs more experts than are selected (NE > E), got "
                             f"NE = E = {gate.experts}; pass rc_loss=False")
        self.gate = gate
        self.out_per_expert = out_per_expert
        self.weighted = weighted
        self.rc_loss = rc_loss
        self.rc_weight = rc_weight
        self.quantile = quantile
        self.damping = damping
        self.error_scale = error_scale
        self.loss_scale = loss_scale
        self.weight = nn.Parameter(torch.empty(gate.experts * out_per_expert, in_channels, kernel_size, kernel_size))
        self.last_indices = None
        self.last_rc_loss = None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        y, indices, rc_loss = torch.ops.smoe.spatial_moe(
            x, self.weight, self.gate.routing, self.gate.selected, self.out_per_expert, self.weighted, self.rc_loss,
            self.rc_weight, self.quantile, self.damping, self.error_scale, self.loss_scale)
        self.last_indices = indices
        self.last_rc_loss = rc_loss
        return y
