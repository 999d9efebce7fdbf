"""Seeded randomized differential test: random shapes (degenerate ones included), options and
dtypes; every op, and forward + backward through autograd, against the LibTorch reference of
DESIGN.md §4 (dense convolution + gather, torch.sort, torch.quantile, the two-pass RC procedure).

SMOE_RANDOM_CASES (default 1000) and SMOE_RANDOM_SEED (default 0) set the run; a long run:
    SMOE_RANDOM_CASES=20000 ./smoe test -R python_test_randomized
"""
import os
import random
import unittest

import torch

import smoe
from test_autograd import reference_layer
from test_ops import reference_forward, reference_route_topk
from test_rc_loss import two_pass

CASES = int(os.environ.get("SMOE_RANDOM_CASES", "1000"))
SEED = int(os.environ.get("SMOE_RANDOM_SEED", "0"))


def draw_case(rng):
    """One random layer call: shapes biased towards the edges (1s, E = NE, K > H, W = 1)."""
    def size(high):
        return rng.choice([1, 2, rng.randint(1, high), rng.randint(1, high)])

    NE = rng.randint(1, 8)
    E = rng.choice([1, NE, rng.randint(1, NE)])
    rc_loss = NE > E and rng.random() < 0.6
    return dict(
        # Batches around the CPU vector widths (4, 8, 16 lanes) select different register tiles.
        B=rng.choice([size(5), rng.randint(1, 20)]), C=size(6), H=size(9), W=size(9), NE=NE, E=E, K=rng.choice([1, 3, 3, 5, 7]), F=rng.choice([1, 1, 2, 3]),
        shared=rng.random() < 0.5, weighted=rng.random() < 0.5,
        dtype=rng.choice([torch.float32, torch.float64]),
        rc_loss=rc_loss, q=rng.choice([0.0, 0.3, 0.7, 1.0, round(rng.random(), 3)]),
        damping=rng.choice([None, None, 0.0, 0.1, 0.5, 1.0]),
        rc_weight=rng.choice([1.0, 0.5, 3.0]),
        error_scale=rng.choice([None, None, 0.5, 100.0]),
        ties=rng.random() < 0.5, seed=rng.randrange(2**31))


def tolerances(dtype):
    return (1e-9, 1e-9) if dtype == torch.float64 else (2e-5, 2e-5)


def close(test, actual, expected, what, case):
    rtol, atol = tolerances(expected.dtype)
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale, equal_nan=True,
                               msg=lambda m: f"{what} differs for {case}:\n{m}")


def check_case(test, case):
    g = torch.Generator().manual_seed(case["seed"])
    B, C, H, W, NE, E, K, F = (case[k] for k in ("B", "C", "H", "W", "NE", "E", "K", "F"))
    dtype, shared, weighted = case["dtype"], case["shared"], case["weighted"]
    x = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    weight = torch.randn(NE * F, C, K, K, generator=g, dtype=dtype)
    # Distinct scores: the selected experts are then unambiguous in both implementations.
    routing_shape = (NE, H, W) if shared else (B, NE, H, W)
    routing = (torch.randperm(torch.Size(routing_shape).numel(), generator=g).to(dtype) * 0.01 - 1.0).reshape(
        routing_shape)
    grad_y = torch.randn(B, E * F, H, W, generator=g, dtype=dtype)
    if case["ties"]:
        grad_y = torch.round(grad_y * 2) / 2  # repeated values and exact zeros

    # route_topk and forward.
    indices, values = smoe.route_topk(routing, E)
    ref_indices, ref_values = reference_route_topk(routing, E)
    test.assertTrue(torch.equal(indices, ref_indices), f"route_topk indices for {case}")
    close(test, values, ref_values, "route_topk values", case)
    close(test, smoe.forward(x, weight, indices, values if weighted else None, F),
          reference_forward(x, weight, indices, values if weighted else None, F), "forward", case)

    # The error quantile.
    s = case["error_scale"] if case["error_scale"] is not None else grad_y.numel() / 2
    close(test, smoe.error_quantile(grad_y, None, case["q"], s),
          torch.quantile((grad_y.abs() * s).reshape(B, -1), case["q"], dim=1), "error_quantile", case)

    # The RC loss op on its own, for the error signal the layer's backward would use.
    if case["rc_loss"]:
        response = reference_forward(x, weight, indices, None, F) if weighted else None
        quantile = smoe.error_quantile(grad_y, response, case["q"], s)
        signal = grad_y * response if weighted else grad_y
        close(test, quantile, torch.quantile((signal.abs() * s).reshape(B, -1), case["q"], dim=1),
              "error_quantile of grad_y * response" if weighted else "error_quantile", case)
        grad_routing, loss = smoe.rc_loss(grad_y, response, indices, routing, quantile, s, F, case["rc_weight"])
        two = two_pass(x, weight, routing, E, F, weighted, grad_y, rc_weight=case["rc_weight"], q=case["q"],
                       damping=None, error_scale=case["error_scale"])
        close(test, grad_routing, two[2], "rc_loss gradient", case)
        close(test, loss, two[3], "rc_loss value", case)

    # The layer through autograd.
    leaves = [t.clone().requires_grad_() for t in (x, weight, routing)]
    y, _, rc_loss = smoe.spatial_moe(*leaves, E, F, weighted, case["rc_loss"], case["rc_weight"], case["q"],
                                     case["damping"], case["error_scale"], 1.0)
    reference_leaves = [t.clone().requires_grad_() for t in (x, weight, routing)]
    reference_y = reference_layer(*reference_leaves, E, F, weighted)
    close(test, y, reference_y, "spatial_moe forward", case)
    y.backward(grad_y)
    reference_y.backward(grad_y)
    expected = [t.grad for t in reference_leaves]  # the plain gradient, straight-through routing
    if case["rc_loss"] or case["damping"] is not None:
        two = two_pass(x, weight, routing, E, F, weighted, grad_y, rc_weight=case["rc_weight"], q=case["q"],
                       damping=case["damping"], error_scale=case["error_scale"])
        expected[0], expected[1] = two[0], two[1]
        if case["rc_loss"]:
            expected[2] = two[2]
            close(test, rc_loss.detach(), two[3], "RC loss value", case)
    for name, leaf, wanted in zip(("grad_x", "grad_weight", "grad_routing"), leaves, expected):
        close(test, leaf.grad, wanted, name, case)


class RandomizedDifferential(unittest.TestCase):
    def test_random_cases_match_the_reference(self):
        rng = random.Random(SEED)
        failures = []
        for number in range(CASES):
            case = draw_case(rng)
            try:
                check_case(self, case)
            except AssertionError as error:
                failures.append(f"case {number}: {error}")
        self.assertEqual(failures, [], f"{len(failures)} of {CASES} cases differ (seed {SEED}):\n" +
                         "\n".join(failures[:5]))


if __name__ == "__main__":
    unittest.main()
