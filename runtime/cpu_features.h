// What the running CPU can execute, and the shape classes tuned kernels are chosen by.
#pragma once

#include <cstdint>

namespace smoe::runtime {

// Shape classes (autotune/workload.cpp writes the same names): batch under 4 or not, input
// channels under 8 or not. "b1-3_c1-7", "b1-3_c8+", "b4+_c1-7", "b4+_c8+" are indices 0..3.
constexpr int kShapeClassCount = 4;
int shape_class_index(int64_t batch, int64_t channels);
int shape_class_index(const char *name);  // -1 for an unknown name

// True when every feature of the x86-64 Linux Halide target (e.g. x86-64-linux-avx2-fma) is
// supported by this CPU. Features it does not know make it false.
bool cpu_runs_target(const char *target);

}  // namespace smoe::runtime
