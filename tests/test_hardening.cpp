// Concurrency, determinism, the kernels' kept scratch and the 32-bit indexing boundary, from C++.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "checks.h"
#include "reference.h"
#include "scratch_memory.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

struct LayerCall {
    at::Tensor x, weight, routing, grad_y;
    int64_t E = 3, F = 2;
    bool weighted;
};

LayerCall make_call(int seed) {
    at::manual_seed(seed);
    LayerCall c;
    c.weighted = seed % 2 == 1;
    const bool shared = seed % 3 != 0;
    c.x = at::randn({4, 5, 12, 11});
    c.weight = at::randn({8 * c.F, 5, 3, 3});
    c.routing = shared ? at::randn({8, 12, 11}) : at::randn({4, 8, 12, 11});
    c.grad_y = at::randn({4, c.E * c.F, 12, 11});
    return c;
}

// y, grad_x, grad_weight, grad_routing, rc_loss of one training-style call (RC loss and damping on).
std::vector<at::Tensor> run_layer(const LayerCall &c) {
    const at::Tensor x = c.x.clone().requires_grad_(), weight = c.weight.clone().requires_grad_(),
                     routing = c.routing.clone().requires_grad_();
    BackwardOptions options;
    options.rc_loss = true;
    options.damping = 0.1;
    auto [y, indices, rc_loss] = smoe::spatial_moe(x, weight, routing, c.E, c.F, c.weighted, options);
    y.backward(c.grad_y);
    return {y.detach(), x.grad(), weight.grad(), routing.grad(), rc_loss};
}

// 8 threads call the layer at once, each on its own inputs, many times: every result equals the
// one computed alone beforehand, bit for bit.
TEST(Concurrency, EightThreadsGetTheSingleThreadedResults) {
    constexpr int kThreads = 8, kRepeats = 6;
    std::vector<LayerCall> calls;
    std::vector<std::vector<at::Tensor>> expected;
    for (int t = 0; t < kThreads; ++t) {
        calls.push_back(make_call(t));
        expected.push_back(run_layer(calls.back()));
    }
    std::vector<std::string> failures(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            try {
                for (int r = 0; r < kRepeats; ++r) {
                    const std::vector<at::Tensor> got = run_layer(calls[t]);
                    for (size_t i = 0; i < got.size(); ++i) {
                        if (!at::equal(got[i], expected[t][i])) {
                            failures[t] = "output " + std::to_string(i) + " differs at repeat " + std::to_string(r);
                            return;
                        }
                    }
                }
            } catch (const std::exception &e) {
                failures[t] = e.what();
            }
        });
    }
    for (auto &thread : threads) thread.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

// The ops agree with the reference from every thread too (not only with themselves).
TEST(Concurrency, ConcurrentForwardMatchesTheReference) {
    constexpr int kThreads = 8;
    std::vector<std::string> failures(kThreads);
    std::vector<std::thread> threads;
    std::vector<LayerCall> calls;
    for (int t = 0; t < kThreads; ++t) calls.push_back(make_call(100 + t));
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            const LayerCall &c = calls[t];
            for (int r = 0; r < 10; ++r) {
                auto [indices, values] = smoe::route_topk(c.routing, c.E);
                const at::Tensor y = smoe::forward(c.x, c.weight, indices, values, c.F);
                const at::Tensor want = reference::forward(c.x, c.weight, indices, values, c.F);
                if (!at::allclose(y, want, 1e-5, 1e-4)) failures[t] = "forward differs from the reference";
            }
        });
    }
    for (auto &thread : threads) thread.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

// Same inputs, same thread count: bitwise the same outputs and gradients, call after call.
TEST(Determinism, RepeatedCallsAreBitwiseIdentical) {
    const int threads = at::get_num_threads();
    for (int count : {1, 2}) {
        at::set_num_threads(count);
        for (int seed = 0; seed < 3; ++seed) {
            const LayerCall c = make_call(seed);
            const std::vector<at::Tensor> first = run_layer(c);
            for (int r = 0; r < 3; ++r) {
                const std::vector<at::Tensor> again = run_layer(c);
                for (size_t i = 0; i < first.size(); ++i) {
                    EXPECT_TRUE(at::equal(first[i], again[i])) << "threads " << count << ", seed " << seed
                                                               << ", output " << i;
                }
            }
        }
    }
    at::set_num_threads(threads);
}

// A ScratchCache over an allocator that records what it handed out and what came back.
struct CountingAllocator {
    static inline std::set<void *> live;
    static inline int allocations = 0;
    static void *allocate(void *, size_t bytes) {
        ++allocations;
        void *block = std::malloc(bytes);
        live.insert(block);
        return block;
    }
    static void free(void *, void *block) {
        live.erase(block);
        std::free(block);
    }
};

constexpr size_t kMiB = size_t(1) << 20;

TEST(ScratchMemory, AReleasedLargeBlockServesTheNextRequestItFits) {
    CountingAllocator::allocations = 0;
    {
        runtime::ScratchCache cache(8 * kMiB, CountingAllocator::allocate, CountingAllocator::free);
        void *block = cache.allocate(nullptr, 3 * kMiB);
        cache.release(nullptr, block);
        EXPECT_EQ(cache.kept_bytes(), 3 * kMiB);
        EXPECT_EQ(cache.allocate(nullptr, 2 * kMiB), block);  // fits, and at most twice the request
        EXPECT_EQ(cache.kept_bytes(), 0u);
        cache.release(nullptr, block);
        void *small = cache.allocate(nullptr, kMiB);  // the 3 MiB block is more than twice as large
        EXPECT_NE(small, block);
        void *larger = cache.allocate(nullptr, 4 * kMiB);  // too small for this one
        EXPECT_NE(larger, block);
        EXPECT_EQ(CountingAllocator::allocations, 3);
        cache.release(nullptr, small);
        cache.release(nullptr, larger);
        EXPECT_EQ(cache.kept_bytes(), 8 * kMiB);
        EXPECT_EQ(CountingAllocator::live.size(), 3u);
    }
    EXPECT_TRUE(CountingAllocator::live.empty()) << "the cache frees what it kept";
}

TEST(ScratchMemory, SmallBlocksAndBlocksBeyondTheCapacityGoBackAtOnce) {
    runtime::ScratchCache cache(4 * kMiB, CountingAllocator::allocate, CountingAllocator::free);
    void *small = cache.allocate(nullptr, runtime::ScratchCache::kKeptFromBytes - 64);
    cache.release(nullptr, small);
    void *huge = cache.allocate(nullptr, 5 * kMiB);
    cache.release(nullptr, huge);
    EXPECT_EQ(cache.kept_bytes(), 0u);
    EXPECT_EQ(CountingAllocator::live.count(small) + CountingAllocator::live.count(huge), 0u);
    cache.release(nullptr, nullptr);  // as free(nullptr): nothing
}

TEST(ScratchMemory, TheOldestKeptBlocksGoFirstBeyondTheCapacity) {
    runtime::ScratchCache cache(5 * kMiB, CountingAllocator::allocate, CountingAllocator::free);
    void *first = cache.allocate(nullptr, 2 * kMiB);
    void *second = cache.allocate(nullptr, 2 * kMiB);
    void *third = cache.allocate(nullptr, 2 * kMiB);
    cache.release(nullptr, first);
    cache.release(nullptr, second);
    cache.release(nullptr, third);
    EXPECT_EQ(cache.kept_bytes(), 4 * kMiB);
    EXPECT_EQ(CountingAllocator::live.count(first), 0u);
    EXPECT_EQ(CountingAllocator::live.count(second) + CountingAllocator::live.count(third), 2u);
}

TEST(ScratchMemory, ZeroCapacityKeepsNothing) {
    runtime::ScratchCache cache(0, CountingAllocator::allocate, CountingAllocator::free);
    void *block = cache.allocate(nullptr, 2 * kMiB);
    cache.release(nullptr, block);
    EXPECT_EQ(cache.kept_bytes(), 0u);
    EXPECT_EQ(CountingAllocator::live.count(block), 0u);
}

TEST(ScratchMemory, TheEnvironmentSetsTheCapacity) {
    const char *saved = std::getenv("SMOE_SCRATCH_CACHE_MIB");
    const std::string restore = saved != nullptr ? saved : "";
    ::unsetenv("SMOE_SCRATCH_CACHE_MIB");
    EXPECT_EQ(runtime::scratch_cache_capacity_from_environment(), 256 * kMiB);
    ::setenv("SMOE_SCRATCH_CACHE_MIB", "0", 1);
    EXPECT_EQ(runtime::scratch_cache_capacity_from_environment(), 0u);
    ::setenv("SMOE_SCRATCH_CACHE_MIB", "64", 1);
    EXPECT_EQ(runtime::scratch_cache_capacity_from_environment(), 64 * kMiB);
    for (const char *bad : {"lots", "-1", "12MB", " 8"}) {
        ::setenv("SMOE_SCRATCH_CACHE_MIB", bad, 1);
        try {
            runtime::scratch_cache_capacity_from_environment();
            ADD_FAILURE() << "accepted " << bad;
        } catch (const c10::Error &e) {
            EXPECT_NE(std::string(e.what_without_backtrace()).find("SMOE_SCRATCH_CACHE_MIB must be a whole number"),
                      std::string::npos)
                << e.what_without_backtrace();
        }
    }
    if (saved != nullptr) {
        ::setenv("SMOE_SCRATCH_CACHE_MIB", restore.c_str(), 1);
    } else {
        ::unsetenv("SMOE_SCRATCH_CACHE_MIB");
    }
}

// Kept scratch holds the previous call's values: a layer large enough to keep its buffers gives
// the reference's result, and the same bits again after a call of another shape reused them.
TEST(ScratchMemory, KernelsOnKeptScratchMatchTheReference) {
    at::manual_seed(11);
    const at::Tensor x = at::randn({4, 32, 32, 32}), weight = at::randn({16, 32, 3, 3});
    const at::Tensor indices = std::get<0>(smoe::route_topk(at::randn({16, 32, 32}), 8));
    const at::Tensor other_x = at::randn({2, 32, 40, 24}) * 100;
    const at::Tensor other_indices = std::get<0>(smoe::route_topk(at::randn({16, 40, 24}), 8));
    const at::Tensor first = smoe::forward(x, weight, indices);
    EXPECT_GT(runtime::kernel_scratch_cache().kept_bytes(), 0u) << "the padded input (591 KiB) is kept";
    smoe::forward(other_x, weight, other_indices);
    const at::Tensor again = smoe::forward(x, weight, indices);
    EXPECT_TRUE(at::equal(first, again));
    const at::Tensor expected = reference::forward(x, weight, indices, std::nullopt, 1);
    EXPECT_TRUE(at::allclose(first, expected, 1e-4, 1e-4)) << (first - expected).abs().max().item<float>();
}

// The 32-bit indexing limit, on both sides of 2^31 - 1 elements, as shapes (nothing allocated).
TEST(LargeTensors, TheInt32BoundaryIsExact) {
    constexpr int64_t limit = std::numeric_limits<int32_t>::max();  // 2^31 - 1 = 7 · 306783378 + 1
    EXPECT_NO_THROW(checks::check_int32_indexable("op", "x", {limit}));
    EXPECT_NO_THROW(checks::check_int32_indexable("op", "x", {1, 7, 1, limit / 7}));
    EXPECT_THROW(checks::check_int32_indexable("op", "x", {limit + 1}), c10::Error);
    EXPECT_THROW(checks::check_int32_indexable("op", "x", {2, 1024, 1024, 1024}), c10::Error);
    // Products that would overflow int64 are still refused, not wrapped around.
    EXPECT_THROW(checks::check_int32_indexable("op", "x", {int64_t{1} << 40, int64_t{1} << 40, 4}), c10::Error);
    try {
        checks::check_int32_indexable("smoe::forward", "x", {2, 1024, 1024, 1024});
    } catch (const c10::Error &e) {
        const std::string message = e.what_without_backtrace();
        EXPECT_NE(message.find("smoe::forward: argument 'x' of shape [2, 1024, 1024, 1024] has more than 2^31 - 1"),
                  std::string::npos)
            << message;
    }
}

// A real call just above the limit is refused before anything is allocated: x is a broadcast
// view (one float) of 2^31 elements.
TEST(LargeTensors, OpsRefuseMoreThanInt32Elements) {
    const at::Tensor x = at::zeros({1}).expand({int64_t{1} << 21, 1, 32, 32});
    const at::Tensor weight = at::randn({4, 1, 3, 3});
    const at::Tensor indices = at::zeros({2, 32, 32}, at::kInt);
    EXPECT_THROW(smoe::forward(x, weight, indices), c10::Error);
    EXPECT_THROW(smoe::route_topk(at::zeros({1}).expand({int64_t{1} << 21, 32, 32}), 1), c10::Error);
}

}  // namespace
}  // namespace smoe
