#include "halide_call.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <atomic>

#include "HalideRuntime.h"

namespace smoe::runtime {
namespace {

// Never throws and never aborts: Halide's generated code is not exception-safe, so the message is
// stored and the pipeline's non-zero return code is turned into an exception by the caller.
void collect_halide_error(void *user_context, const char *message) {
    if (user_context != nullptr) {
        static_cast<CallContext *>(user_context)->record_error(message);
    }
}

// Installed when the library loads, before any kernel can run.
const bool error_handler_installed = [] {
    halide_set_error_handler(collect_halide_error);
    return true;
}();

}  // namespace

CallContext::CallContext(const char *name) : op_name(name) {}

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
    (void)error_handler_installed;
    if (result == 0) return;
    const std::string message = context.errors();
    TORCH_CHECK(false, context.op_name, ": the Halide kernel failed (error ", result, "): ",
                message.empty() ? std::string("no message") : message);
}

void sync_thread_count() {
    static std::atomic<int> current{0};
    const int wanted = at::get_num_threads();
    if (current.exchange(wanted) != wanted) {
        halide_set_num_threads(wanted);
    }
}

}  // namespace smoe::runtime
