// A zero-copy halide_buffer_t view of a contiguous at::Tensor (CPU or CUDA).
#pragma once

#include <ATen/core/Tensor.h>

#include "HalideRuntime.h"

namespace smoe::runtime {

class TensorBuffer {
public:
    static constexpr int kMaxDims = 4;

    // Halide's dimension order is the reverse of PyTorch's. With dimensions > t.dim(), leading
    // unit dimensions are added on the PyTorch side (e.g. a shared [NE,H,W] routing as [1,NE,H,W]).
    explicit TensorBuffer(const at::Tensor &t, int dimensions = -1);

    halide_buffer_t *get() { return &buffer_; }

private:
    halide_buffer_t buffer_{};
    halide_dimension_t dims_[kMaxDims]{};
};

}  // namespace smoe::runtime
