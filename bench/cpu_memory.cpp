#include "cpu_memory.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace smoe::bench {
namespace {

// Hands out blocks of the wrapped allocator, keeping each block's own DataPtr (and so its deleter)
// until the block is freed. Blocks are returned with data == context, as raw_allocate requires
// (oneDNN allocates through raw_allocate / raw_deallocate).
class CountingAllocator final : public c10::Allocator {
  public:
    explicit CountingAllocator(c10::Allocator *wrapped) : wrapped_(wrapped) {}

    c10::DataPtr allocate(size_t bytes) override {
        c10::DataPtr block = wrapped_->allocate(bytes);
        void *data = block.get();
        if (data == nullptr) return block;  // zero bytes
        const c10::Device device = block.device();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            blocks_.emplace(data, Block{std::move(block), static_cast<int64_t>(bytes)});
            in_use_ += static_cast<int64_t>(bytes);
            peak_ = std::max(peak_, in_use_);
        }
        return {data, data, &release, device};
    }

    c10::DeleterFnPtr raw_deleter() const override { return &release; }

    void copy_data(void *dest, const void *src, std::size_t count) const override {
        default_copy_data(dest, src, count);
    }

    // Starts a new peak from what is held now; returns that.
    int64_t reset_peak() {
        std::lock_guard<std::mutex> lock(mutex_);
        peak_ = in_use_;
        return in_use_;
    }

    int64_t peak() {
        std::lock_guard<std::mutex> lock(mutex_);
        return peak_;
    }

    static CountingAllocator *instance;

  private:
    struct Block {
        c10::DataPtr owner;
        int64_t bytes;
    };

    static void release(void *data) { instance->free_block(data); }

    void free_block(void *data) {
        c10::DataPtr owner;  // frees the block through the wrapped allocator, after the lock
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto found = blocks_.find(data);
            if (found != blocks_.end()) {
                owner = std::move(found->second.owner);
                in_use_ -= found->second.bytes;
                blocks_.erase(found);
                return;
            }
        }
        // A raw block the wrapped allocator handed out before the counter was installed.
        const c10::DeleterFnPtr wrapped_deleter = wrapped_->raw_deleter();
        TORCH_CHECK(wrapped_deleter != nullptr, "cpu memory counter: freeing an unknown block");
        wrapped_deleter(data);
    }

    c10::Allocator *wrapped_;
    std::mutex mutex_;
    std::unordered_map<void *, Block> blocks_;
    int64_t in_use_ = 0, peak_ = 0;
};

CountingAllocator *CountingAllocator::instance = nullptr;

CountingAllocator &counter() {
    TORCH_CHECK(CountingAllocator::instance != nullptr, "cpu memory counter: call install_cpu_memory_counter() first");
    return *CountingAllocator::instance;
}

}  // namespace

void install_cpu_memory_counter() {
    static std::once_flag installed;
    std::call_once(installed, [] {
        // Never destroyed: blocks it handed out may be freed during static destruction.
        CountingAllocator::instance = new CountingAllocator(c10::GetCPUAllocator());
        // Above any priority LibTorch registers its own CPU allocators with.
        c10::SetCPUAllocator(CountingAllocator::instance, /*priority=*/UINT8_MAX);
    });
}

int64_t peak_cpu_bytes_during(const std::function<void()> &fn) {
    const int64_t held_before = counter().reset_peak();
    fn();
    return counter().peak() - held_before;
}

}  // namespace smoe::bench
