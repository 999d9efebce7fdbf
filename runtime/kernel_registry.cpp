#include "kernel_registry.h"

#include "smoe_forward_per_sample_unweighted_f32.h"
#include "smoe_forward_per_sample_unweighted_f64.h"
#include "smoe_forward_per_sample_weighted_f32.h"
#include "smoe_forward_per_sample_weighted_f64.h"
#include "smoe_forward_shared_unweighted_f32.h"
#include "smoe_forward_shared_unweighted_f64.h"
#include "smoe_forward_shared_weighted_f32.h"
#include "smoe_forward_shared_weighted_f64.h"
#include "smoe_route_topk_f32.h"
#include "smoe_route_topk_f64.h"
#ifdef SMOE_WITH_CUDA_KERNELS
#include "smoe_forward_per_sample_unweighted_f32_cuda.h"
#include "smoe_forward_per_sample_weighted_f32_cuda.h"
#include "smoe_forward_shared_unweighted_f32_cuda.h"
#include "smoe_forward_shared_weighted_f32_cuda.h"
#include "smoe_route_topk_f32_cuda.h"
#endif

namespace smoe::runtime {
namespace {

template <auto Kernel>
int route_topk_adapter(void *uc, const RouteTopKArgs &a) {
    return Kernel(uc, a.routing, a.indices, a.values);
}

template <auto Kernel>
int forward_unweighted_adapter(void *uc, const ForwardArgs &a) {
    return Kernel(uc, a.x, a.weight, a.indices, a.out_per_expert, a.y);
}

template <auto Kernel>
int forward_weighted_adapter(void *uc, const ForwardArgs &a) {
    return Kernel(uc, a.x, a.weight, a.indices, a.values, a.out_per_expert, a.y);
}

// [shared_routing][weighted]
using ForwardTable = ForwardKernel[2][2];

constexpr ForwardTable cpu_f32 = {
    {forward_unweighted_adapter<smoe_forward_per_sample_unweighted_f32>,
     forward_weighted_adapter<smoe_forward_per_sample_weighted_f32>},
    {forward_unweighted_adapter<smoe_forward_shared_unweighted_f32>,
     forward_weighted_adapter<smoe_forward_shared_weighted_f32>}};
constexpr ForwardTable cpu_f64 = {
    {forward_unweighted_adapter<smoe_forward_per_sample_unweighted_f64>,
     forward_weighted_adapter<smoe_forward_per_sample_weighted_f64>},
    {forward_unweighted_adapter<smoe_forward_shared_unweighted_f64>,
     forward_weighted_adapter<smoe_forward_shared_weighted_f64>}};
#ifdef SMOE_WITH_CUDA_KERNELS
constexpr ForwardTable cuda_f32 = {
    {forward_unweighted_adapter<smoe_forward_per_sample_unweighted_f32_cuda>,
     forward_weighted_adapter<smoe_forward_per_sample_weighted_f32_cuda>},
    {forward_unweighted_adapter<smoe_forward_shared_unweighted_f32_cuda>,
     forward_weighted_adapter<smoe_forward_shared_weighted_f32_cuda>}};
#endif

}  // namespace

RouteTopKKernel find_route_topk(c10::ScalarType dtype, c10::DeviceType device) {
    if (device == c10::DeviceType::CPU) {
        if (dtype == c10::kFloat) return route_topk_adapter<smoe_route_topk_f32>;
        if (dtype == c10::kDouble) return route_topk_adapter<smoe_route_topk_f64>;
    }
#ifdef SMOE_WITH_CUDA_KERNELS
    if (device == c10::DeviceType::CUDA && dtype == c10::kFloat) return route_topk_adapter<smoe_route_topk_f32_cuda>;
#endif
    return nullptr;
}

ForwardKernel find_forward(c10::ScalarType dtype, c10::DeviceType device, ForwardVariant v) {
    const ForwardTable *table = nullptr;
    if (device == c10::DeviceType::CPU) {
        table = dtype == c10::kFloat ? &cpu_f32 : dtype == c10::kDouble ? &cpu_f64 : nullptr;
    }
#ifdef SMOE_WITH_CUDA_KERNELS
    if (device == c10::DeviceType::CUDA && dtype == c10::kFloat) table = &cuda_f32;
#endif
    return table != nullptr ? (*table)[v.shared_routing][v.weighted] : nullptr;
}

}  // namespace smoe::runtime
