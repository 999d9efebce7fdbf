#include "halide_call.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>

#include "HalideRuntime.h"
#include "scratch_memory.h"

namespace smoe::runtime {
namespace {

// Never throws and never aborts: Halide's generated code is not exception-safe, so the message is
// stored and the pipeline's non-zero return code is turned into an exception by the caller.
void collect_halide_error(void *user_context, const char *message) {
    if (user_context != nullptr) {
        static_cast<CallContext *>(user_context)->record_error(message);
    }
}

// Halide's parallel loops run on ATen's intra-op threads, so a training step has one CPU thread
// pool: ATen's OpenMP workers, which spin for a while after each ATen op, never compete for the
// cores with a second pool's workers (measured on a batch-1 step: backward 21 ms with two pools,
// 16 ms with one). Each of ATen's threads takes the next task index until none is left, as
// Halide's own pool does (tasks differ in cost at the grid's edges). Inside an ATen parallel region
// (a caller's, or a Halide loop nested in another) the tasks run in order on the calling thread.
int do_par_for_on_aten_threads(void *user_context, halide_task_t task, int min, int size, uint8_t *closure) {
    if (size <= 1 || at::get_num_threads() == 1 || at::in_parallel_region()) {
        for (int i = 0; i < size; ++i) {
            if (const int result = task(user_context, min + i, closure); result != 0) return result;
        }
        return 0;
    }
    std::atomic<int> next{0};
    std::atomic<int> first_error{0};
    at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), size), 1, [&](int64_t, int64_t) {
        for (int i = next++; i < size && first_error.load(std::memory_order_relaxed) == 0; i = next++) {
            if (const int result = task(user_context, min + i, closure); result != 0) {
                int none = 0;
                first_error.compare_exchange_strong(none, result);
            }
        }
    });
    return first_error.load();
}

// The kernels' scratch comes from kernel_scratch_cache() once an op has made it (CallContext's
// constructor, where a bad SMOE_SCRATCH_CACHE_MIB can still throw); until then from Halide's own.
std::atomic<ScratchCache *> scratch_cache{nullptr};

void *allocate_scratch(void *user_context, size_t bytes) {
    ScratchCache *cache = scratch_cache.load(std::memory_order_acquire);
    return cache != nullptr ? cache->allocate(user_context, bytes) : halide_default_malloc(user_context, bytes);
}

// Blocks the cache did not hand out go back to Halide's own free.
void release_scratch(void *user_context, void *block) {
    ScratchCache *cache = scratch_cache.load(std::memory_order_acquire);
    if (cache != nullptr) {
        cache->release(user_context, block);
    } else {
        halide_default_free(user_context, block);
    }
}

// Installed when the library loads, before any kernel can run.
const bool handlers_installed = [] {
    halide_set_error_handler(collect_halide_error);
    halide_set_custom_do_par_for(do_par_for_on_aten_threads);
    halide_set_custom_malloc(allocate_scratch);
    halide_set_custom_free(release_scratch);
    return true;
}();

}  // namespace

CallContext::CallContext(const char *name) : op_name(name) {
    scratch_cache.store(&kernel_scratch_cache(), std::memory_order_release);
}

void CallContext::record_error(const char *message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!errors_.empty()) errors_ += '\n';
    errors_ += message;
    while (!errors_.empty() && errors_.back() == '\n') errors_.pop_back();
}

std::string CallContext::errors() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return errors_;
}

void check_halide_result(int result, const CallContext &context) {
    (void)handlers_installed;
    if (result == 0) return;
    const std::string message = context.errors();
    TORCH_CHECK(false, context.op_name, ": the Halide kernel failed (error ", result, "): ",
                message.empty() ? std::string("no message") : message);
}

}  // namespace smoe::runtime
