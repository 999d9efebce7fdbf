// torch.autocast: inside an autocast region the ops run in float32, the precision of the kernels,
// as PyTorch does for its own float32-policy ops. float16 and bfloat16 arguments are cast up on
// the way in (through autocast's cast cache, so a weight is cast once per region); the results are
// float32. Autograd sees the casts, so gradients reach half-precision leaves in their own dtype.
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace smoe {
namespace {

void cast_to_float32(at::Tensor &t) {
    if (t.defined() && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16)) {
        t = at::autocast::cached_cast(at::kFloat, t, t.device().type());
    }
}

void run_in_float32(const c10::OperatorHandle &op, torch::jit::Stack *stack) {
    const auto &arguments = op.schema().arguments();
    const size_t first = stack->size() - arguments.size();
    for (size_t i = first; i < stack->size(); ++i) {
        c10::IValue &value = (*stack)[i];
        if (value.isTensor()) {
            at::Tensor t = value.toTensor();
            cast_to_float32(t);
            value = t;
        }
    }
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    op.callBoxed(stack);
}

// Every op with floating-point tensor arguments.
constexpr const char *kOps[] = {"route_topk", "forward", "spatial_moe", "spatial_moe_backward", "error_quantile",
                                "rc_loss"};

}  // namespace
}  // namespace smoe

TORCH_LIBRARY_IMPL(smoe, AutocastCPU, m) {
    for (const char *op : smoe::kOps) m.impl(op, torch::CppFunction::makeFromBoxedFunction<&smoe::run_in_float32>());
}
TORCH_LIBRARY_IMPL(smoe, AutocastCUDA, m) {
    for (const char *op : smoe::kOps) m.impl(op, torch::CppFunction::makeFromBoxedFunction<&smoe::run_in_float32>());
}
