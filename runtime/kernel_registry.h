// Which compiled kernel serves a call: op × dtype × device × variant. Every kernel of an op is
// adapted to one argument struct, so callers never see the per-variant generated signatures.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include "HalideRuntime.h"

namespace smoe::runtime {

struct RouteTopKArgs {
    halide_buffer_t *routing;  // (w, h, e, b)
    halide_buffer_t *indices;  // (w, h, j, b)
    halide_buffer_t *values;   // (w, h, j, b)
};
using RouteTopKKernel = int (*)(void *user_context, const RouteTopKArgs &args);

struct ForwardVariant {
    bool shared_routing;
    bool weighted;
};
struct ForwardArgs {
    halide_buffer_t *x, *weight, *indices;
    halide_buffer_t *values;  // null unless weighted
    int out_per_expert;
    halide_buffer_t *y;
};
using ForwardKernel = int (*)(void *user_context, const ForwardArgs &args);

// nullptr when the build has no such kernel.
RouteTopKKernel find_route_topk(c10::ScalarType dtype, c10::DeviceType device);
ForwardKernel find_forward(c10::ScalarType dtype, c10::DeviceType device, ForwardVariant variant);

}  // namespace smoe::runtime
