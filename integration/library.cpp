// The smoe operator library: schemas of every operator and the C++ entry points. Each op's
// implementations (CPU, CUDA, Meta) live in the file named after it.
#include <algorithm>
#include <utility>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "cpu_features.h"
#include "kernel_registry.h"
#include "smoe_ops.h"
#include "variant_cache.h"

TORCH_LIBRARY(smoe, m) {
    m.def("route_topk(Tensor routing, int E) -> (Tensor indices, Tensor values)");
    m.def("route_topk_indices(Tensor routing, int E) -> Tensor indices");
    m.def("forward(Tensor x, Tensor weight, Tensor indices, Tensor? values=None, int F=1) -> Tensor");
    // The layer with autograd: routing + forward; its backward is spatial_moe_backward. The options
    // after `weighted` are those of smoe::BackwardOptions (smoe_ops.h).
    m.def("spatial_moe(Tensor x, Tensor weight, Tensor routing, int E, int F=1, bool weighted=False, "
          "bool rc_loss=False, float rc_weight=1.0, float quantile=0.7, float? damping=None, "
          "float? error_scale=None, float loss_scale=1.0) -> (Tensor y, Tensor indices, Tensor rc_loss)");
    // grad_x, grad_weight and the gate's gradient (RC or straight-through), each only where
    // output_mask asks for it (an undefined tensor otherwise), and the RC loss value.
    m.def("spatial_moe_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor indices, Tensor? values, "
          "Tensor? routing, int F, bool rc_loss, float rc_weight, float quantile, float? damping, "
          "float? error_scale, float loss_scale, bool[3] output_mask) "
          "-> (Tensor grad_x, Tensor grad_weight, Tensor grad_routing, Tensor rc_loss)");
    m.def("error_quantile(Tensor grad_y, Tensor? response, float q, float scale) -> Tensor");
    m.def("rc_loss(Tensor grad_y, Tensor? response, Tensor indices, Tensor routing, Tensor quantile, float scale, "
          "int F=1, float rc_weight=1.0) -> (Tensor grad_routing, Tensor loss)");
    m.def("tuned_kernels() -> str[]", &smoe::tuned_kernels);
    m.def("set_tuned_kernels(bool enabled) -> ()", &smoe::set_tuned_kernels);
    m.def("kernel_variants() -> str[]", &smoe::kernel_variants);
    m.def("set_kernel_variant(str choice) -> ()", &smoe::set_kernel_variant);
    m.def("kernel_choice_cache() -> str", &smoe::kernel_choice_cache);
    m.def("bf16_dot_products() -> bool", &smoe::bf16_dot_products);
}

namespace smoe {
namespace {

// "op routing gating ", the start of a kernel-list line, from a variant's fields.
template <typename Info>
std::string variant_words(const Info &v) {
    return std::string(v.op) + " " + (v.shared_routing ? "shared" : "per_sample") + " " +
           (v.weighted ? "weighted" : "unweighted") + " ";
}

}  // namespace

void set_tuned_kernels(bool enabled) {
    runtime::set_tuned_kernels_enabled(enabled);
}

std::vector<std::string> tuned_kernels() {
    std::vector<std::string> lines;
    for (const runtime::TunedVariantInfo &v : runtime::tuned_variants()) {
        const char *why = v.active                                 ? " active"
                          : runtime::cpu_runs_target(v.target) ? " inactive (tuned on another CPU)"
                                                               : " inactive (this CPU does not run the target)";
        lines.push_back(variant_words(v) + v.shape_class + " " + v.knobs + " " + v.target + " cpu=" + v.cpu + why);
    }
    return lines;
}

std::vector<std::string> kernel_variants() {
    std::vector<std::string> lines;
    for (const runtime::FormulationVariantInfo &v : runtime::formulation_variants()) {
        lines.push_back(variant_words(v) + v.name + " " + v.params + " " + v.classes);
    }
    for (auto [dtype, variants] : {std::pair{"bfloat16", &runtime::bf16_variants()},
                                   std::pair{"float16", &runtime::f16_variants()}}) {
        for (const runtime::HalfVariantInfo &v : *variants) {
            // Shape classes: every batch from 8 input channels, as half_dispatch chooses.
            lines.push_back(variant_words(v) + v.name + " dtype=" + dtype + "@" + v.target + " b1-3_c8+,b4+_c8+");
        }
    }
    return lines;
}

void set_kernel_variant(const std::string &choice) {
    runtime::set_kernel_variant(choice);
}

std::string kernel_variant() {
    return runtime::kernel_variant();
}

bool bf16_dot_products() {
    const std::vector<runtime::HalfVariantInfo> &variants = runtime::bf16_variants();
    return std::any_of(variants.begin(), variants.end(),
                       [](const runtime::HalfVariantInfo &v) { return std::string(v.name) == "pair_dots"; });
}

std::string kernel_choice_cache() {
    const std::optional<std::string> &path = runtime::kernel_cache_path();
    return path ? *path : "off";
}

std::tuple<at::Tensor, at::Tensor> route_topk(const at::Tensor &routing, int64_t E) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::route_topk", "")
                               .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor &, int64_t)>();
    return op.call(routing, E);
}

at::Tensor route_topk_indices(const at::Tensor &routing, int64_t E) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::route_topk_indices", "")
                               .typed<at::Tensor(const at::Tensor &, int64_t)>();
    return op.call(routing, E);
}

at::Tensor forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                   const std::optional<at::Tensor> &values, int64_t F) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::forward", "")
                               .typed<at::Tensor(const at::Tensor &, const at::Tensor &, const at::Tensor &,
                                                 const std::optional<at::Tensor> &, int64_t)>();
    return op.call(x, weight, indices, values, F);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spatial_moe(const at::Tensor &x, const at::Tensor &weight,
                                                           const at::Tensor &routing, int64_t E, int64_t F,
                                                           bool weighted, const BackwardOptions &o) {
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("smoe::spatial_moe", "")
            .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                const at::Tensor &, const at::Tensor &, const at::Tensor &, int64_t, int64_t, bool, bool, double,
                double, std::optional<double>, std::optional<double>, double)>();
    return op.call(x, weight, routing, E, F, weighted, o.rc_loss, o.rc_weight, o.quantile, o.damping, o.error_scale,
                   o.loss_scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spatial_moe_backward(
    const at::Tensor &grad_y, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
    const std::optional<at::Tensor> &values, const std::optional<at::Tensor> &routing, int64_t F,
    const BackwardOptions &o, std::array<bool, 3> output_mask) {
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("smoe::spatial_moe_backward", "")
            .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                const at::Tensor &, const at::Tensor &, const at::Tensor &, const at::Tensor &,
                const std::optional<at::Tensor> &, const std::optional<at::Tensor> &, int64_t, bool, double, double,
                std::optional<double>, std::optional<double>, double, std::array<bool, 3>)>();
    return op.call(grad_y, x, weight, indices, values, routing, F, o.rc_loss, o.rc_weight, o.quantile, o.damping,
                   o.error_scale, o.loss_scale, output_mask);
}

}  // namespace smoe
