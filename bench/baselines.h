// What smoe_bench and smoe_demo share: the layer configurations, their random inputs, the LibTorch
// baselines the smoe operators are compared against, and the machine's fp32 GEMM rate.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

namespace smoe::bench {

// One SMoE layer's shape (CPU sizes of the paper's experiments). Routing is shared ([NE, H, W]) and
// unweighted.
struct LayerConfig {
    std::string name;
    int64_t batch, channels, height, width;
    int64_t experts;   // NE, the bank
    int64_t selected;  // E, experts evaluated per pixel
    int64_t kernel;    // K
    int64_t outputs_per_expert = 1;  // F

    // Multiply-adds counted twice, over the selected experts only: 2·B·E·F·C·K·K·H·W.
    double flops() const;
};

const std::vector<LayerConfig> &layer_configs();

struct LayerInputs {
    at::Tensor x;              // [B, C, H, W]
    at::Tensor weight;         // [NE·F, C, K, K]
    at::Tensor routing;        // [NE, H, W]
    at::Tensor dense_weight;   // [E·F, C, K, K]: the first E experts, for the dense-E baseline
};

// Random inputs, the same for a given config and seed.
LayerInputs make_inputs(const LayerConfig &config, uint64_t seed = 0);

// The paper's routing: torch.topk along the expert axis. Returns (indices int64, values).
std::tuple<at::Tensor, at::Tensor> naive_route_topk(const at::Tensor &routing, int64_t selected);

// The paper's forward: a dense conv over all NE·F filters, then a gather of the selected channels
// (output f of the j-th selected expert is channel idx·F + f). indices [E,H,W] or [B,E,H,W].
at::Tensor naive_forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                         int64_t outputs_per_expert = 1);

// A plain conv with E·F filters: the FLOPs of the sparse layer, at dense-conv efficiency.
at::Tensor dense_e_forward(const at::Tensor &x, const at::Tensor &dense_weight);

// Median wall time of `runs` calls of `fn` after `warmup` untimed calls, in seconds.
double median_seconds(const std::function<void()> &fn, int warmup, int runs);

// Side of the square matrices the GEMM rate is measured on.
inline constexpr int64_t kGemmSize = 2048;

// FLOPs of one at::mm of two n×n fp32 matrices.
double gemm_flops(int64_t n);

// The machine's fp32 GEMM rate in GFLOP/s (median of at::mm on n×n matrices): the roofline that
// the forwards' GFLOP/s are reported against.
double measure_gemm_gflops(int64_t n = kGemmSize);

}  // namespace smoe::bench
