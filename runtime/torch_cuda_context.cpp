// Shares PyTorch's CUDA context and stream with Halide's CUDA runtime (built when torch has CUDA).
//
// Halide's runtime asks three hooks for a context and a stream around every launch and copy. They
// read them from the call's user context, which bind_torch_cuda() filled with the device's primary
// context (the one the CUDA runtime API and so PyTorch use; cuCtxGetCurrent can be null on
// threads such as autograd workers) and PyTorch's current stream.
#include <c10/core/Device.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>

#include <array>
#include <mutex>

#include "HalideRuntimeCuda.h"
#include "cuda_device.h"
#include "halide_call.h"

namespace smoe::runtime {
namespace {

using CUresult = int;
using CUdevice = int;
using RetainPrimaryContext = CUresult (*)(void **context, CUdevice device);
using DeviceGet = CUresult (*)(CUdevice *device, int ordinal);

int acquire_context(void *user_context, void **cuda_context, bool) {
    auto *call = static_cast<CallContext *>(user_context);
    if (call == nullptr || call->cuda_context == nullptr) return halide_error_code_device_interface_no_device;
    *cuda_context = call->cuda_context;
    return 0;
}

int release_context(void *) { return 0; }

int get_stream(void *user_context, void *, void **stream) {
    auto *call = static_cast<CallContext *>(user_context);
    *stream = call != nullptr ? call->cuda_stream : nullptr;
    return 0;
}

struct DriverApi {
    RetainPrimaryContext retain_primary_context = nullptr;
    DeviceGet device_get = nullptr;
};

// Loads the driver globally: Halide's runtime finds cuInit & co. in the process by name, and the
// driver is often installed only as libcuda.so.1, which its own lookup of "libcuda.so" misses.
const DriverApi &driver() {
    static const DriverApi api = [] {
        DriverApi a;
        void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
        if (lib == nullptr) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);
        TORCH_CHECK(lib != nullptr, "smoe: cannot load the CUDA driver (libcuda.so.1): ", dlerror());
        a.retain_primary_context = reinterpret_cast<RetainPrimaryContext>(dlsym(lib, "cuDevicePrimaryCtxRetain"));
        a.device_get = reinterpret_cast<DeviceGet>(dlsym(lib, "cuDeviceGet"));
        TORCH_CHECK(a.retain_primary_context != nullptr && a.device_get != nullptr,
                    "smoe: the CUDA driver lacks cuDevicePrimaryCtxRetain/cuDeviceGet");
        halide_set_cuda_acquire_context(acquire_context);
        halide_set_cuda_release_context(release_context);
        halide_set_cuda_get_stream(get_stream);
        halide_reuse_device_allocations(nullptr, true);
        return a;
    }();
    return api;
}

// The primary context of each device, retained once for the life of the process.
void *primary_context(int ordinal) {
    static std::mutex mutex;
    static std::array<void *, 64> contexts{};
    TORCH_CHECK(ordinal >= 0 && ordinal < static_cast<int>(contexts.size()), "smoe: CUDA device ", ordinal,
                " is out of range");
    std::lock_guard<std::mutex> lock(mutex);
    if (contexts[ordinal] == nullptr) {
        const DriverApi &api = driver();
        CUdevice device = 0;
        TORCH_CHECK(api.device_get(&device, ordinal) == 0, "smoe: cuDeviceGet(", ordinal, ") failed");
        TORCH_CHECK(api.retain_primary_context(&contexts[ordinal], device) == 0,
                    "smoe: cuDevicePrimaryCtxRetain failed for CUDA device ", ordinal);
    }
    return contexts[ordinal];
}

}  // namespace

void bind_torch_cuda(CallContext &context, const c10::Device &device) {
    TORCH_CHECK(device.is_cuda(), "smoe: bind_torch_cuda needs a CUDA device, got ", device);
    const int ordinal = device.has_index() ? device.index() : c10::cuda::current_device();
    context.cuda_context = primary_context(ordinal);
    context.cuda_stream = c10::cuda::getCurrentCUDAStream(ordinal).stream();
}

}  // namespace smoe::runtime
