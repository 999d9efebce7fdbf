// The CUDA side of the Halide runtime as the operator layer sees it.
#pragma once

#include "HalideRuntime.h"

namespace c10 {
struct Device;
}

namespace smoe::runtime {

struct CallContext;

// True when this build contains CUDA kernels (they are cross-compiled; running them needs a GPU).
bool built_with_cuda_kernels();

// Halide's CUDA device interface; throws c10::Error when the build has no CUDA kernels.
const halide_device_interface_t *cuda_device_interface();

// Points the call at PyTorch's CUDA state for `device`: its primary context and the current
// stream, so kernels run in order with the surrounding PyTorch work. Throws without CUDA support.
void bind_torch_cuda(CallContext &context, const c10::Device &device);

}  // namespace smoe::runtime
