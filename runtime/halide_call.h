// Calling AOT-compiled Halide kernels from the operator layer: the per-call user context, and the
// conversion of Halide's error codes and messages into C++ exceptions (c10::Error).
#pragma once

#include <mutex>
#include <string>

namespace smoe::runtime {

// Passed to every kernel as its user_context (all kernels are built with the user_context
// feature). Halide reports errors through halide_error() from whichever thread hit them, with this
// context, so messages are collected here instead of aborting the process.
struct CallContext {
    const char *op_name;
    void *cuda_context = nullptr;  // CUcontext the CUDA runtime hooks hand to Halide
    void *cuda_stream = nullptr;   // CUstream the kernels launch on

    explicit CallContext(const char *name);
    void record_error(const char *message);
    std::string errors() const;

private:
    mutable std::mutex mutex_;
    std::string errors_;
};

// Throws c10::Error naming the operator and carrying Halide's message when result != 0.
void check_halide_result(int result, const CallContext &context);

}  // namespace smoe::runtime

#include <c10/core/Device.h>

#include "cuda_device.h"

namespace smoe::runtime {

// Runs one compiled kernel for operator `op_name` on `device`'s CPU threads or CUDA stream and
// throws c10::Error with Halide's message if it fails.
template <typename Kernel, typename Args>
void run_kernel(const char *op_name, Kernel kernel, const Args &args, const c10::Device &device) {
    CallContext context(op_name);
    if (device.is_cuda()) bind_torch_cuda(context, device);
    check_halide_result(kernel(&context, args), context);
}

}  // namespace smoe::runtime
