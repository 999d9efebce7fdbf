// torch.autocast. The layer ops (forward, spatial_moe) follow PyTorch's lower-precision policy, as
// conv2d does: float32 tensor arguments are cast to the region's dtype (float16 or bfloat16) through
// autocast's cast cache, so a weight is cast once per region, and the half-precision kernels run
// (float32 arithmetic, half-precision storage). The other ops run in the widest floating type of
// their tensor arguments ("promote"), so mixed inputs meet in one dtype; a quantile argument keeps
// its own type (float32 for half-precision signals). Autograd sees the casts, so gradients reach
// every leaf in its own dtype.
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cstring>
#include <optional>

namespace smoe {
namespace {

// Calls `visit(tensor, argument)` for every tensor argument on the stack, replacing it by the result.
template <typename Visit>
void for_each_tensor(const c10::OperatorHandle &op, torch::jit::Stack *stack, Visit visit) {
    const auto &arguments = op.schema().arguments();
    const size_t first = stack->size() - arguments.size();
    for (size_t i = first; i < stack->size(); ++i) {
        c10::IValue &value = (*stack)[i];
        if (value.isTensor()) value = visit(value.toTensor(), arguments[i - first]);
    }
}

void call_without_autocast(const c10::OperatorHandle &op, torch::jit::Stack *stack) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    op.callBoxed(stack);
}

template <c10::DeviceType Device>
void run_in_lower_precision(const c10::OperatorHandle &op, torch::jit::Stack *stack) {
    const at::ScalarType lower = at::autocast::get_autocast_dtype(Device);
    for_each_tensor(op, stack, [&](const at::Tensor &t, const c10::Argument &) {
        return t.defined() && t.scalar_type() == at::kFloat ? at::autocast::cached_cast(lower, t, Device) : t;
    });
    call_without_autocast(op, stack);
}

bool is_floating(const at::Tensor &t) {
    return t.defined() && at::isFloatingType(t.scalar_type());
}

template <c10::DeviceType Device>
void run_promoted(const c10::OperatorHandle &op, torch::jit::Stack *stack) {
    auto takes_part = [](const at::Tensor &t, const c10::Argument &argument) {
        return is_floating(t) && argument.name() != "quantile";
    };
    std::optional<at::ScalarType> widest;
    for_each_tensor(op, stack, [&](const at::Tensor &t, const c10::Argument &argument) {
        if (takes_part(t, argument)) widest = widest ? at::promoteTypes(*widest, t.scalar_type()) : t.scalar_type();
        return t;
    });
    if (widest) {
        for_each_tensor(op, stack, [&](const at::Tensor &t, const c10::Argument &argument) {
            return takes_part(t, argument) && t.scalar_type() != *widest ? t.to(*widest) : t;
        });
    }
    call_without_autocast(op, stack);
}

constexpr const char *kLowerPrecisionOps[] = {"forward", "spatial_moe"};
constexpr const char *kPromotedOps[] = {"route_topk", "route_topk_indices", "spatial_moe_backward", "error_quantile",
                                        "rc_loss"};

template <c10::DeviceType Device>
void register_autocast(torch::Library &m) {
    for (const char *op : kLowerPrecisionOps) {
        m.impl(op, torch::CppFunction::makeFromBoxedFunction<&run_in_lower_precision<Device>>());
    }
    for (const char *op : kPromotedOps) m.impl(op, torch::CppFunction::makeFromBoxedFunction<&run_promoted<Device>>());
}

}  // namespace
}  // namespace smoe

TORCH_LIBRARY_IMPL(smoe, AutocastCPU, m) { smoe::register_autocast<c10::DeviceType::CPU>(m); }
TORCH_LIBRARY_IMPL(smoe, AutocastCUDA, m) { smoe::register_autocast<c10::DeviceType::CUDA>(m); }
