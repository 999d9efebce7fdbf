#include "scratch_memory.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

#include "HalideRuntime.h"

namespace smoe::runtime {

ScratchCache::ScratchCache(size_t capacity_bytes, Allocate allocate, Free free)
    : capacity_(capacity_bytes), allocate_(allocate), free_(free) {}

ScratchCache::~ScratchCache() {
    for (const Kept &old : take_oldest_until(0)) free_(nullptr, old.block);
}

void *ScratchCache::allocate(void *user_context, size_t bytes) {
    if (bytes < kKeptFromBytes || capacity_ == 0) return allocate_(user_context, bytes);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto best = kept_.end();
        for (auto it = kept_.begin(); it != kept_.end(); ++it) {
            if (it->bytes >= bytes && it->bytes / 2 <= bytes && (best == kept_.end() || it->bytes < best->bytes)) {
                best = it;
            }
        }
        if (best != kept_.end()) {
            void *block = best->block;
            in_use_.emplace(block, best->bytes);
            kept_bytes_ -= best->bytes;
            kept_.erase(best);
            return block;
        }
    }
    void *block = allocate_(user_context, bytes);
    if (block != nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        in_use_.emplace(block, bytes);
    }
    return block;
}

void ScratchCache::release(void *user_context, void *block) {
    if (block == nullptr) return;
    std::list<Kept> evicted;  // freed after the lock: returning pages to the system is a system call
    bool keep = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = in_use_.find(block);
        if (it != in_use_.end()) {
            const size_t bytes = it->second;
            in_use_.erase(it);
            keep = bytes <= capacity_;
            if (keep) {
                evicted = take_oldest_until(capacity_ - bytes);
                kept_.push_back({block, bytes});
                kept_bytes_ += bytes;
            }
        }
    }
    for (const Kept &old : evicted) free_(user_context, old.block);
    if (!keep) free_(user_context, block);
}

size_t ScratchCache::kept_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_bytes_;
}

// Called with mutex_ held (or from the destructor).
std::list<ScratchCache::Kept> ScratchCache::take_oldest_until(size_t kept_limit) {
    std::list<Kept> taken;
    while (kept_bytes_ > kept_limit && !kept_.empty()) {
        kept_bytes_ -= kept_.front().bytes;
        taken.splice(taken.end(), kept_, kept_.begin());
    }
    return taken;
}

size_t scratch_cache_capacity_from_environment() {
    const char *value = std::getenv("SMOE_SCRATCH_CACHE_MIB");
    if (value == nullptr || *value == '\0') return size_t(256) << 20;
    const std::string text = value;
    char *end = nullptr;
    const unsigned long long mib = std::strtoull(text.c_str(), &end, 10);
    TORCH_CHECK(end == text.c_str() + text.size() && text.find_first_not_of("0123456789") == std::string::npos &&
                    mib <= (size_t(1) << 24),
                "SMOE_SCRATCH_CACHE_MIB must be a whole number of MiB (0 to 16777216), got \"", text, "\"");
    return static_cast<size_t>(mib) << 20;
}

ScratchCache &kernel_scratch_cache() {
    // Never destroyed: a kernel may still run while static objects are torn down at exit.
    static ScratchCache *cache =
        new ScratchCache(scratch_cache_capacity_from_environment(), halide_default_malloc, halide_default_free);
    return *cache;
}

}  // namespace smoe::runtime
