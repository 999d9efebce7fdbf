// What the running CPU can execute, and the shape classes tuned kernels are chosen by.
#pragma once

#include <cstdint>
#include <string>

namespace smoe::runtime {

// Shape classes (autotune/workload.cpp writes the same names): batch under 4 or not, input
// channels under 8 or not. "b1-3_c1-7", "b1-3_c8+", "b4+_c1-7", "b4+_c8+" are indices 0..3.
constexpr int kShapeClassCount = 4;
int shape_class_index(int64_t batch, int64_t channels);
int shape_class_index(const char *name);  // -1 for an unknown name

// True when every feature of the x86-64 Linux Halide target (e.g. x86-64-linux-avx2-fma) is
// supported by this CPU. Features it does not know make it false.
bool cpu_runs_target(const char *target);

// The running CPU as CPUID reports it: vendor string, family and model (extended fields folded
// in, as Linux's /proc/cpuinfo shows them) and the brand string.
struct CpuIdentity {
    std::string vendor;
    int family = 0;
    int model = 0;
    std::string name;
};
const CpuIdentity &host_cpu();
// "vendor-family-model", e.g. GenuineIntel-6-207: what measured kernel choices are filed under.
std::string host_cpu_fingerprint();
// True when a tuned store's CPU, "vendor|family|model" (model empty: any model of the family), is
// this CPU.
bool cpu_matches(const char *store_cpu);

}  // namespace smoe::runtime
