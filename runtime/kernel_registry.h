// Which compiled kernel serves a call: op × dtype × device × variant. Every kernel of an op is
// adapted to one argument struct, so callers never see the per-variant generated signatures.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

#include "HalideRuntime.h"

namespace smoe::runtime {

struct RouteTopKArgs {
    halide_buffer_t *routing;  // (w, h, e, b)
    halide_buffer_t *indices;  // (w, h, j, b)
    halide_buffer_t *values;   // (w, h, j, b)
};
using RouteTopKKernel = int (*)(void *user_context, const RouteTopKArgs &args);

// The variants every SMoE kernel below is compiled in.
struct RoutingVariant {
    bool shared_routing;  // routing [E,H,W] for the whole batch, else per sample
    bool weighted;        // outputs gated by the routing scores
};

struct ForwardArgs {
    halide_buffer_t *x, *weight, *indices;
    halide_buffer_t *values;  // null unless weighted
    int out_per_expert;
    halide_buffer_t *y;
};
// Damping of the error signal fed to the expert-side gradients; damping = 1 leaves it unchanged.
struct DampingArgs {
    halide_buffer_t *quantile;  // Q_b(dy), [B]
    double error_scale;         // s
    double damping;             // δ
};
struct BackwardDataArgs {
    halide_buffer_t *grad_y, *weight, *indices;
    halide_buffer_t *values;  // null unless weighted
    int out_per_expert;
    DampingArgs damping;
    halide_buffer_t *grad_x;
};
struct BackwardWeightArgs {
    halide_buffer_t *grad_y, *x, *indices;
    halide_buffer_t *values;  // null unless weighted
    int out_per_expert;
    DampingArgs damping;
    halide_buffer_t *grad_weight;
};
struct GateGradientArgs {
    halide_buffer_t *grad_y;
    halide_buffer_t *response;  // u, null unless weighted
    halide_buffer_t *indices;
    int out_per_expert;
    halide_buffer_t *grad_routing;
};

struct RCLossArgs {
    halide_buffer_t *grad_y;
    halide_buffer_t *response;  // u, null unless weighted
    halide_buffer_t *indices, *routing;
    halide_buffer_t *quantile;  // Q_b(ε), [B]
    int out_per_expert;
    double error_scale;      // s
    double gradient_scale;   // rc_weight × AMP loss scale
    halide_buffer_t *grad_routing;
    halide_buffer_t *loss;   // 0-d
};

struct ErrorQuantileArgs {
    halide_buffer_t *signal;    // [B, N], dy
    halide_buffer_t *response;  // u, like signal: the quantile of dy·u; null for dy alone
    double q;
    double error_scale;
    halide_buffer_t *quantile;  // [B]
};
using ErrorQuantileKernel = int (*)(void *user_context, const ErrorQuantileArgs &args);

template <typename Args>
using Kernel = int (*)(void *user_context, const Args &args);

// A tuned float32 CPU kernel the build compiled from a tuned store (README "Tuning").
struct TunedVariantInfo {
    const char *op;  // forward, backward_data, backward_weight
    bool shared_routing, weighted;
    const char *shape_class;  // see shape_class_index()
    const char *knobs;        // name:value,... that differ from the defaults
    const char *target;       // the Halide target it was compiled for
    const char *cpu;          // the CPU it was tuned on, vendor|family|model
    const void *kernel;
    bool active;  // this CPU runs its target and is the store's CPU, so calls of its class use it
};
const std::vector<TunedVariantInfo> &tuned_variants();
// Off: every call uses the regular kernels (for comparisons); on by default.
void set_tuned_kernels_enabled(bool enabled);

// A float32 CPU kernel in another formulation, built for the AVX2-or-better CPU targets (some for
// the AVX-512 ones only; cmake/SmoeKernels.cmake) and listed only where this CPU runs them.
struct FormulationVariantInfo {
    const char *op;  // forward, backward_data, backward_weight
    bool shared_routing, weighted;
    const char *name;     // e.g. channel_dots, union_tiles, pixel_tiles_16, channel_axpys, slot_sweeps
    const char *params;   // the generator parameters it was compiled with
    const char *classes;  // the shape classes it serves when measurement is off, comma-separated
    const char *target;   // the least CPU target it is built for
    const void *kernel;
};
const std::vector<FormulationVariantInfo> &formulation_variants();

// A bfloat16 or float16 CPU kernel besides the regular ones (cmake/SmoeKernels.cmake), listed only
// where this CPU runs its target: the float32 formulations channel_dots, channel_axpys and
// slot_sweeps on half-precision storage (float32 FMAs on widened operands), and for bfloat16 the
// forward's pair_dots and the pair sweeps (bf16 dot-product instructions, AVX512_BF16) and
// amx_tiles (AMX), which sum in another order and read denormal bfloat16 inputs as zero (README
// "Half precision"). The kernel choice picks among an op's variants of the call's dtype as for
// float32.
struct HalfVariantInfo {
    const char *op;  // forward, backward_data, backward_weight
    bool shared_routing, weighted;
    const char *name;
    const char *target;  // the Halide target it was compiled for
    const void *kernel;
};
const std::vector<HalfVariantInfo> &bf16_variants();
const std::vector<HalfVariantInfo> &f16_variants();

// Which of an op's CPU float32 kernels serves a call:
//   "auto" (the default): the fastest for the call's shape as measured on this CPU and cached
//     (runtime/variant_cache.h); with measurement off, by shape class: a tuned variant of the
//     class, else the op's formulation variant for the class, else the regular kernel.
//   "regular", "tuned", or a formulation's name: that kernel wherever the op has it.
// Unknown names are an error naming the choices.
void set_kernel_variant(const std::string &choice);
std::string kernel_variant();

// nullptr when the build has no such kernel. CPU float32 kernels of ops with tuned variants
// dispatch on each call's shape class.
RouteTopKKernel find_route_topk(c10::ScalarType dtype, c10::DeviceType device);
ErrorQuantileKernel find_error_quantile(c10::ScalarType dtype, c10::DeviceType device, bool product);
template <typename Args>
Kernel<Args> find_kernel(c10::ScalarType dtype, c10::DeviceType device, RoutingVariant variant);

}  // namespace smoe::runtime
