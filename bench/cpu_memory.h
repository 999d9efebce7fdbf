// Peak memory of CPU tensors: a counting wrapper around LibTorch's CPU allocator.
#pragma once

#include <cstdint>
#include <functional>

namespace smoe::bench {

// Puts a counting allocator in front of LibTorch's CPU allocator (once; later calls do nothing).
// It then sees every block that allocator hands out: all CPU tensors, and oneDNN's buffers, which
// LibTorch routes through it. Buffers that libraries take from malloc directly are not seen: the
// scratch of the smoe Halide kernels and BLAS packing buffers. Install it before anything is timed
// so that every method runs with it.
void install_cpu_memory_counter();

// The most bytes held at once while `fn` ran, minus what was held when it started: the memory
// `fn` needed on top of what already existed (its inputs). Needs install_cpu_memory_counter().
int64_t peak_cpu_bytes_during(const std::function<void()> &fn);

inline double to_mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace smoe::bench
