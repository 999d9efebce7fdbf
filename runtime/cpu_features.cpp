#include "cpu_features.h"

#include <cstring>
#include <sstream>
#include <string>

namespace smoe::runtime {

int shape_class_index(int64_t batch, int64_t channels) {
    return (batch >= 4 ? 2 : 0) + (channels >= 8 ? 1 : 0);
}

int shape_class_index(const char *name) {
    static const char *const names[kShapeClassCount] = {"b1-3_c1-7", "b1-3_c8+", "b4+_c1-7", "b4+_c8+"};
    for (int i = 0; i < kShapeClassCount; ++i) {
        if (std::strcmp(name, names[i]) == 0) return i;
    }
    return -1;
}

namespace {

bool cpu_has(const std::string &feature) {
    __builtin_cpu_init();
    // Halide's names of x86 features, as the CPU reports them (avx512_skylake: F, CD, BW, DQ, VL).
    if (feature == "x86" || feature == "64" || feature == "linux" || feature == "user_context") return true;
    if (feature == "sse41") return __builtin_cpu_supports("sse4.1");
    if (feature == "avx") return __builtin_cpu_supports("avx");
    if (feature == "avx2") return __builtin_cpu_supports("avx2");
    if (feature == "fma") return __builtin_cpu_supports("fma");
    if (feature == "f16c") return __builtin_cpu_supports("f16c");
    if (feature == "avx512") return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd");
    if (feature == "avx512_skylake") {
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
    }
    return false;
}

}  // namespace

bool cpu_runs_target(const char *target) {
    std::string text(target);
    if (text.rfind("x86-64-linux", 0) != 0) return false;
    std::stringstream parts(text.substr(std::strlen("x86-64-linux")));
    std::string feature;
    while (std::getline(parts, feature, '-')) {
        if (!feature.empty() && !cpu_has(feature)) return false;
    }
    return true;
}

}  // namespace smoe::runtime
