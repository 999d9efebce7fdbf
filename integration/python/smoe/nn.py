"""torch.nn modules over torch.ops.smoe: the tensor routing gate, the SMoE convolution, and the
weather ResNet built from them."""
import math

import torch
from torch import nn
from torch.nn import functional

__all__ = ["TensorRoutingGate", "SpatialMoE2d", "WeatherResNet"]


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

    ``periodic_width``: the grid wraps around along its width (longitude on a global grid). The
    input is extended by K//2 columns from the other side and the routing likewise (the copies'
    routing is detached: each point's gate learns from its own output only), the layer runs on the
    extended grid with its zero padding, and the extra columns of the output are cut off; rows
    (latitude) keep the zero padding. The extra columns take part in the per-sample error quantile
    with a zero error, which shifts it by at most 2·(K//2)/W of a rank.
    """

    def __init__(self, in_channels, gate, kernel_size=3, out_per_expert=1, weighted=False, rc_loss=True,
                 rc_weight=1.0, quantile=0.7, damping=0.1, error_scale=None, loss_scale=1.0, periodic_width=False):
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
        self.periodic_width = periodic_width
        self.weight = nn.Parameter(torch.empty(gate.experts * out_per_expert, in_channels, kernel_size, kernel_size))
        self.last_indices = None
        self.last_rc_loss = None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        routing = self.gate.routing
        pad = self.weight.shape[-1] // 2 if self.periodic_width else 0
        if pad:
            x = wrap_width(x, pad)
            routing = torch.cat([routing[..., -pad:].detach(), routing, routing[..., :pad].detach()], dim=-1)
        y, indices, rc_loss = torch.ops.smoe.spatial_moe(
            x, self.weight, routing, self.gate.selected, self.out_per_expert, self.weighted, self.rc_loss,
            self.rc_weight, self.quantile, self.damping, self.error_scale, self.loss_scale)
        if pad:
            y = y[..., pad:-pad]
            indices = indices[..., pad:-pad]
        self.last_indices = indices
        self.last_rc_loss = rc_loss
        return y


def wrap_width(x, pad):
    """x extended by ``pad`` columns on each side from the other side of its width (periodic)."""
    return torch.cat([x[..., -pad:], x, x[..., :pad]], dim=-1) if pad else x


class PeriodicConv2d(nn.Conv2d):
    """A "same" convolution, periodic along the width (longitude) and zero-padded along the height."""

    def __init__(self, in_channels, out_channels, kernel_size, periodic_width=True):
        super().__init__(in_channels, out_channels, kernel_size,
                         padding=(kernel_size // 2, 0 if periodic_width else kernel_size // 2))
        self.periodic_width = periodic_width

    def forward(self, x):
        return super().forward(wrap_width(x, self.kernel_size[1] // 2 if self.periodic_width else 0))


class WeatherResNet(nn.Module):
    """The ResNet of Rasp & Thuerey (2021) for WeatherBench, with SMoE layers where ``smoe`` says.

    An initial 7x7 convolution to ``filters`` channels, ``blocks`` residual blocks of two
    [3x3 convolution -> LeakyReLU -> BatchNorm -> Dropout] whose output is added to their input, and
    a final 5x5 convolution to ``out_channels``. Every convolution is periodic in longitude (the
    grid's width) and zero-padded in latitude.

    ``smoe`` places SMoE layers (SpatialMoE2d, 3x3, ``experts`` experts, default 2 x ``filters``,
    ``filters`` selected per grid point, as in the paper): None (a plain ResNet), "first" (one after
    the initial convolution, followed by LeakyReLU), "last" (one after the last block, followed by
    LeakyReLU) or "all" (replacing every 3x3 convolution of the blocks). All SMoE layers share one
    tensor routing gate per (grid, NE): here one, ``gates[experts]``; ``init_gates_from_class_map``
    starts it from a prior. ``smoe_options`` go to every SpatialMoE2d (rc_loss, quantile, ...).
    """

    PLACES = (None, "first", "last", "all")

    def __init__(self, in_channels, out_channels, height, width, filters=128, blocks=19, dropout=0.1,
                 smoe=None, experts=None, smoe_options=None, periodic_width=True):
        super().__init__()
        if smoe not in self.PLACES:
            raise ValueError(f"WeatherResNet: smoe must be one of {self.PLACES}, got {smoe!r}")
        if filters < 1 or blocks < 0:
            raise ValueError(f"WeatherResNet: need filters >= 1 and blocks >= 0, got {filters} and {blocks}")
        experts = 2 * filters if experts is None else experts
        self.smoe = smoe
        self.gates = nn.ModuleDict()
        if smoe is not None:
            self.gates[str(experts)] = TensorRoutingGate(experts, filters, height, width)
        options = dict(smoe_options or {})

        def three_by_three():
            if smoe == "all":
                return SpatialMoE2d(filters, self.gates[str(experts)], 3, periodic_width=periodic_width, **options)
            return PeriodicConv2d(filters, filters, 3, periodic_width)

        def smoe_layer():
            return nn.Sequential(SpatialMoE2d(filters, self.gates[str(experts)], 3, periodic_width=periodic_width,
                                              **options), nn.LeakyReLU())

        self.head = nn.Sequential(PeriodicConv2d(in_channels, filters, 7, periodic_width), nn.LeakyReLU())
        self.first = smoe_layer() if smoe == "first" else nn.Identity()
        self.blocks = nn.ModuleList(
            nn.Sequential(*[layer for _ in range(2) for layer in (three_by_three(), nn.LeakyReLU(),
                                                                   nn.BatchNorm2d(filters), nn.Dropout(dropout))])
            for _ in range(blocks))
        self.last = smoe_layer() if smoe == "last" else nn.Identity()
        self.tail = PeriodicConv2d(filters, out_channels, 5, periodic_width)

    def smoe_layers(self):
        return [m for m in self.modules() if isinstance(m, SpatialMoE2d)]

    @torch.no_grad()
    def init_gates_from_class_map(self, class_map, classes):
        """Start every gate from a prior map, e.g. land/sea (TensorRoutingGate.init_from_class_map)."""
        for gate in self.gates.values():
            gate.init_from_class_map(class_map, classes)

    def forward(self, x):
        x = self.first(self.head(x))
        for block in self.blocks:
            x = x + block(x)
        return self.tail(self.last(x))
