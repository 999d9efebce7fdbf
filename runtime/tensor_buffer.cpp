#include "tensor_buffer.h"

#include <c10/util/Exception.h>

#include "cuda_device.h"

namespace smoe::runtime {
namespace {

halide_type_t halide_type_of(at::ScalarType type) {
    switch (type) {
    case at::kFloat: return halide_type_t(halide_type_float, 32);
    case at::kDouble: return halide_type_t(halide_type_float, 64);
    case at::kHalf: return halide_type_t(halide_type_float, 16);
    case at::kBFloat16: return halide_type_t(halide_type_bfloat, 16);
    case at::kInt: return halide_type_t(halide_type_int, 32);
    default: TORCH_CHECK(false, "smoe: no Halide buffer type for ", type);
    }
}

}  // namespace

TensorBuffer::TensorBuffer(const at::Tensor &t, int dimensions) {
    // The ops make every input contiguous and create contiguous outputs; a strided view here would
    // let a kernel write where the tensor does not look.
    TORCH_INTERNAL_ASSERT(t.is_contiguous(), "smoe: a Halide buffer must view a contiguous tensor");
    const int rank = static_cast<int>(t.dim());
    if (dimensions < 0) dimensions = rank;
    TORCH_CHECK(rank <= dimensions && dimensions <= kMaxDims, "smoe: cannot view a ", rank,
                "-d tensor as a ", dimensions, "-d Halide buffer");
    int64_t outer_stride = 1;
    for (int i = 0; i < dimensions; ++i) {
        halide_dimension_t &d = dims_[i];
        if (i < rank) {
            const int torch_dim = rank - 1 - i;
            d.min = 0;
            d.extent = static_cast<int32_t>(t.size(torch_dim));
            d.stride = static_cast<int32_t>(t.stride(torch_dim));
            outer_stride = std::max<int64_t>(outer_stride, t.size(torch_dim) * t.stride(torch_dim));
        } else {
            d.min = 0;
            d.extent = 1;
            d.stride = static_cast<int32_t>(outer_stride);
        }
        d.flags = 0;
    }
    buffer_.type = halide_type_of(t.scalar_type());
    buffer_.dimensions = dimensions;
    buffer_.dim = dims_;
    if (t.is_cuda()) {
        buffer_.host = nullptr;
        buffer_.device = reinterpret_cast<uint64_t>(t.data_ptr());
        buffer_.device_interface = cuda_device_interface();
        buffer_.flags = halide_buffer_flag_device_dirty;
    } else {
        buffer_.host = static_cast<uint8_t *>(t.data_ptr());
        buffer_.device = 0;
        buffer_.device_interface = nullptr;
        buffer_.flags = 0;
    }
}

}  // namespace smoe::runtime
