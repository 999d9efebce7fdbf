// Built in every configuration: without CUDA kernels the functions report that clearly.
#include "cuda_device.h"

#include <c10/util/Exception.h>

#ifdef SMOE_WITH_CUDA_KERNELS
#include "HalideRuntimeCuda.h"
#endif

namespace smoe::runtime {

bool built_with_cuda_kernels() {
#ifdef SMOE_WITH_CUDA_KERNELS
    return true;
#else
    return false;
#endif
}

const halide_device_interface_t *cuda_device_interface() {
#ifdef SMOE_WITH_CUDA_KERNELS
    return halide_cuda_device_interface();
#else
    TORCH_CHECK(false, "smoe: this build has no CUDA kernels (configure with SMOE_CUDA=ON)");
#endif
}

#ifndef SMOE_WITH_TORCH_CUDA
void bind_torch_cuda(CallContext &, const c10::Device &) {
    TORCH_CHECK(false, "smoe: this build has no CUDA operator support (torch without CUDA, or "
                       "the CUDA runtime headers were not found at configure time)");
}
#endif

}  // namespace smoe::runtime
