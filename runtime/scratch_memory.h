// The CPU kernels' scratch buffers (Halide's halide_malloc), the large ones kept between calls.
//
// A layer's kernels allocate the same large buffers on every call (the forward's padded input,
// 9 MiB at weatherbench; the weight gradient's partial sums of each band). From glibc's malloc
// such a buffer comes back as fresh pages each time: at NE/E = 4 (B = 8, C = 128, 32x64) a Python
// training step took about 3,200 page faults, the kernels' first writes into their scratch (240
// with the cache). Kept blocks are
// handed out again instead, so a training loop touches its scratch pages once.
//
// SMOE_SCRATCH_CACHE_MIB bounds the bytes kept while no kernel uses them (default 256); 0 keeps
// none, and every buffer goes back to malloc as before.
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <unordered_map>

namespace smoe::runtime {

// Blocks of at least kKeptFromBytes, kept after release up to a capacity and handed out again for
// requests they fit (at most twice the request, so that a small request does not take a large block
// a later call needs). The oldest kept blocks go back first. Thread-safe.
class ScratchCache {
public:
    using Allocate = void *(*)(void *user_context, size_t bytes);
    using Free = void (*)(void *user_context, void *block);
    static constexpr size_t kKeptFromBytes = size_t(128) << 10;

    ScratchCache(size_t capacity_bytes, Allocate allocate, Free free);
    ~ScratchCache();
    ScratchCache(const ScratchCache &) = delete;
    ScratchCache &operator=(const ScratchCache &) = delete;

    void *allocate(void *user_context, size_t bytes);
    void release(void *user_context, void *block);
    size_t kept_bytes() const;

private:
    struct Kept {
        void *block;
        size_t bytes;
    };
    // Removes the oldest kept blocks until at most kept_limit bytes are kept; the caller frees them.
    std::list<Kept> take_oldest_until(size_t kept_limit);

    const size_t capacity_;
    const Allocate allocate_;
    const Free free_;
    mutable std::mutex mutex_;
    std::unordered_map<void *, size_t> in_use_;  // the large blocks handed out, by their size
    std::list<Kept> kept_;                       // oldest first
    size_t kept_bytes_ = 0;
};

// SMOE_SCRATCH_CACHE_MIB in bytes (256 MiB when unset); throws c10::Error naming the variable when
// it is not a whole number of MiB.
size_t scratch_cache_capacity_from_environment();

// The cache behind the library's halide_malloc (installed when the library loads).
ScratchCache &kernel_scratch_cache();

}  // namespace smoe::runtime
