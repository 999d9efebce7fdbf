// What smoe_bench and smoe_demo share: the layer configurations, their random inputs, the LibTorch
// baselines the smoe operators are compared against, one training step of each method, and the
// machine's fp32 GEMM rate.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
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
    // 0: random routing scores per pixel (the worst case for locality); n > 0: the grid is cut into
    // n x n regions whose pixels share their scores, so neighbours share their expert set, as under
    // a trained gate.
    int64_t routing_regions = 0;

    // Multiply-adds counted twice, over the selected experts only: 2·B·E·F·C·K·K·H·W.
    double flops() const;
};

// The paper's layers at CPU sizes (DESIGN.md §6): heat, weatherbench, cifar.
const std::vector<LayerConfig> &layer_configs();
// What smoe_compare adds to them: weatherbench at batches 1, 2, 4; an NE/E sweep at fixed C and E
// (2, 4, 8); the ens10-like layer; weatherbench routed by regions.
const std::vector<LayerConfig> &compare_configs();

struct LayerInputs {
    at::Tensor x;              // [B, C, H, W]
    at::Tensor weight;         // [NE·F, C, K, K]
    at::Tensor routing;        // [NE, H, W]
    at::Tensor dense_weight;   // [E·F, C, K, K]: the first E experts, for the dense-E baseline
    at::Tensor grad_y;         // [B, E·F, H, W]: the gradient of the loss wrt the layer's output
};

// Random inputs, the same for a given config and seed; in `type`, rounded from the float32 values.
LayerInputs make_inputs(const LayerConfig &config, uint64_t seed = 0, at::ScalarType type = at::kFloat);

// The same tensors (same storage) as autograd leaves: x, weight, routing and dense_weight require
// gradients.
LayerInputs as_leaves(const LayerInputs &inputs);

// What every benchmark compares: the smoe operators, the paper's method, and a dense conv with the
// sparse layer's FLOPs.
enum class Method { smoe, naive, dense_e };
inline constexpr std::array<Method, 3> kMethods = {Method::smoe, Method::naive, Method::dense_e};
const char *method_name(Method method);  // "smoe", "naive", "dense_e"

// The paper's routing: torch.topk along the expert axis. Returns (indices int64, values).
std::tuple<at::Tensor, at::Tensor> naive_route_topk(const at::Tensor &routing, int64_t selected);

// The paper's forward: a dense conv over all NE·F filters, then a gather of the selected channels
// (output f of the j-th selected expert is channel idx·F + f). indices [E,H,W] or [B,E,H,W].
at::Tensor naive_forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                         int64_t outputs_per_expert = 1);

// The top-E in the specification's order: a stable descending sort, equal scores lower expert
// first (what smoe::route_topk computes; at::topk leaves the order of equal scores unspecified).
// Returns (indices int64, values).
std::tuple<at::Tensor, at::Tensor> stable_route_topk(const at::Tensor &routing, int64_t selected);

// The paper's layer for the experts `indices` chose from `routing` without autograd (int64, from
// naive_route_topk or stable_route_topk), differentiable wrt x, weight and routing: naive_forward,
// and the straight-through gate of the unweighted layer (y = u in value; the routing gets the sum
// of dy over the batch at its selected experts).
at::Tensor naive_spatial_moe(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing,
                             const at::Tensor &indices, int64_t outputs_per_expert = 1);

// A plain conv with E·F filters: the FLOPs of the sparse layer, at dense-conv efficiency.
at::Tensor dense_e_forward(const at::Tensor &x, const at::Tensor &dense_weight);

// Gradients of one layer's parameters. dense-E has no routing: `routing` stays undefined and
// `weight` is the gradient of dense_weight.
struct LayerGradients {
    at::Tensor x, weight, routing;
};

// The layer's output, with its autograd graph, on leaves from as_leaves: smoe::spatial_moe,
// naive_spatial_moe routed by naive_route_topk (the paper's layer), or dense_e_forward.
at::Tensor layer_output(Method method, const LayerConfig &config, const LayerInputs &leaves);

// The backward of `y` (from layer_output with the same method and leaves) for leaves.grad_y, by
// LibTorch autograd. retain_graph keeps the graph so that the same backward can run again.
LayerGradients layer_gradients(Method method, const at::Tensor &y, const LayerInputs &leaves,
                               bool retain_graph = false);

// One training step of one layer: layer_output, then layer_gradients.
LayerGradients train_step(Method method, const LayerConfig &config, const LayerInputs &leaves);

// CPU bytes a training step needs on top of its inputs (see cpu_memory.h for what is counted):
// one untimed step first, so that one-off allocations (e.g. oneDNN's caches) are not counted.
int64_t train_step_peak_bytes(Method method, const LayerConfig &config, const LayerInputs &leaves);

// The paper's RC loss and damping around the naive layer (DESIGN.md §4, the public reference's way)
// for the error leaves.grad_y, with q = 0.7, δ = 0.1 and s = numel(dy)/2:
//   naive_error_quantile: torch.quantile of |dy|·s per sample (a sort);
//   naive_rc_loss: dense labels [B, NE, H, W], BCE-with-logits and its backward (a second pass);
//   naive_rc_backward: the damped error's backward through y (from layer_output(naive)) for x and
//   weight, then naive_rc_loss for the routing.
inline constexpr double kRCQuantile = 0.7, kRCDamping = 0.1;
at::Tensor naive_error_quantile(const at::Tensor &grad_y, double q, double scale);
std::tuple<at::Tensor, at::Tensor> naive_rc_loss(const at::Tensor &grad_y, const at::Tensor &indices,
                                                 const at::Tensor &routing, const at::Tensor &quantile, double scale);
// `indices` are the experts y was routed to (int64); undefined: at::topk of the routing, as the
// paper's code does.
LayerGradients naive_rc_backward(const at::Tensor &y, const LayerConfig &config, const LayerInputs &leaves,
                                 bool retain_graph = false, const at::Tensor &indices = {});

// The training step of record (the paper's training): RC loss and damping with q = 0.7, δ = 0.1 —
// smoe::spatial_moe with those options and one backward; the naive layer the paper's way
// (naive_rc_backward); dense-E has neither and takes its plain step.
LayerGradients rc_train_step(Method method, const LayerConfig &config, const LayerInputs &leaves);
int64_t rc_train_step_peak_bytes(Method method, const LayerConfig &config, const LayerInputs &leaves);

// Median wall time of `runs` calls of `fn` after `warmup` untimed calls, in seconds.
double median_seconds(const std::function<void()> &fn, int warmup, int runs);

// The methods timed in turn: after one warm-up call each, `rounds` rounds that each time every
// method (the median of `runs` calls), starting one method later every round, so that the
// machine's drifts hit them alike. Returns each method's round medians, in seconds.
std::vector<std::vector<double>> interleaved_seconds(const std::vector<std::function<void()>> &methods, int rounds,
                                                     int runs);

// Side of the square matrices the GEMM rate is measured on.
inline constexpr int64_t kGemmSize = 2048;

// FLOPs of one at::mm of two n×n fp32 matrices.
double gemm_flops(int64_t n);

// The machine's fp32 GEMM rate in GFLOP/s (median of at::mm on n×n matrices): the roofline that
// the forwards' GFLOP/s are reported against.
double measure_gemm_gflops(int64_t n = kGemmSize);

}  // namespace smoe::bench
