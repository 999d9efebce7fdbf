#include "cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

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

// The CPUID leaf 7 feature bits used below: subleaf 0's edx and subleaf 1's eax.
struct Leaf7 {
    unsigned edx = 0, eax1 = 0;
};
const Leaf7 &leaf7() {
    static const Leaf7 bits = [] {
        Leaf7 l;
        unsigned eax = 0, ebx = 0, ecx = 0;
        if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &l.edx) && eax >= 1) {
            unsigned edx = 0;
            __get_cpuid_count(7, 1, &l.eax1, &ebx, &ecx, &edx);
        }
        return l;
    }();
    return bits;
}

// AMX tiles (AMX-TILE, AMX-BF16, AMX-INT8) whose state the OS saves (XCR0 bits 17 and 18), and
// which Linux lets this process use: it hands out the tile data only on request (arch_prctl
// ARCH_REQ_XCOMP_PERM for XTILEDATA), which is made here, once.
bool amx_usable() {
    static const bool usable = [] {
        const unsigned edx = leaf7().edx;
        if (!((edx >> 22) & 1) || !((edx >> 24) & 1) || !((edx >> 25) & 1)) return false;
        unsigned eax = 0, ebx = 0, ecx = 0, edx1 = 0;
        if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx1) || !((ecx >> 27) & 1)) return false;  // OSXSAVE
        unsigned xcr0_low = 0, xcr0_high = 0;
        __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
        constexpr unsigned kTileState = 3u << 17;
        if ((xcr0_low & kTileState) != kTileState) return false;
        constexpr long kRequestPermission = 0x1023, kTileData = 18;
        return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
    }();
    return usable;
}

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
    // Halide's avx512_cannonlake adds IFMA and VBMI; avx512_zen4 (LLVM's znver4) adds BF16, VNNI,
    // BITALG, VBMI2, VPOPCNTDQ, GFNI, VAES and VPCLMULQDQ.
    if (feature == "avx512_cannonlake") {
        return cpu_has("avx512_skylake") && __builtin_cpu_supports("avx512ifma") &&
               __builtin_cpu_supports("avx512vbmi");
    }
    if (feature == "avx512_zen4") {
        return cpu_has("avx512_cannonlake") && __builtin_cpu_supports("avx512bf16") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bitalg") &&
               __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512vpopcntdq") &&
               __builtin_cpu_supports("gfni") && __builtin_cpu_supports("vaes") &&
               __builtin_cpu_supports("vpclmulqdq");
    }
    // Halide's avx512_sapphirerapids (LLVM's sapphirerapids) adds BF16, VNNI, FP16, AVX-VNNI and the
    // AMX tiles to Cannon Lake's set; avxvnni is AVX-VNNI alone.
    if (feature == "avxvnni") return (leaf7().eax1 >> 4) & 1;
    if (feature == "avx512_sapphirerapids") {
        return cpu_has("avx512_cannonlake") && __builtin_cpu_supports("avx512bf16") &&
               __builtin_cpu_supports("avx512vnni") && ((leaf7().edx >> 23) & 1) && cpu_has("avxvnni") &&
               amx_usable();
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

const CpuIdentity &host_cpu() {
    static const CpuIdentity cpu = [] {
        CpuIdentity id;
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (__get_cpuid(0, &eax, &ebx, &ecx, &edx)) {
            char vendor[13] = {};
            std::memcpy(vendor, &ebx, 4);
            std::memcpy(vendor + 4, &edx, 4);
            std::memcpy(vendor + 8, &ecx, 4);
            id.vendor = vendor;
        }
        if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
            const int base_family = (eax >> 8) & 0xf, base_model = (eax >> 4) & 0xf;
            const int extended_family = (eax >> 20) & 0xff, extended_model = (eax >> 16) & 0xf;
            id.family = base_family == 0xf ? base_family + extended_family : base_family;
            id.model = base_family == 0x6 || base_family == 0xf ? (extended_model << 4) + base_model : base_model;
        }
        unsigned max_extended = __get_cpuid_max(0x80000000, nullptr);
        if (max_extended >= 0x80000004) {
            char brand[49] = {};
            for (unsigned leaf = 0; leaf < 3; ++leaf) {
                __get_cpuid(0x80000002 + leaf, &eax, &ebx, &ecx, &edx);
                std::memcpy(brand + 16 * leaf, &eax, 4);
                std::memcpy(brand + 16 * leaf + 4, &ebx, 4);
                std::memcpy(brand + 16 * leaf + 8, &ecx, 4);
                std::memcpy(brand + 16 * leaf + 12, &edx, 4);
            }
            id.name = brand;
            id.name.erase(0, id.name.find_first_not_of(' '));
        }
        return id;
    }();
    return cpu;
}

std::string host_cpu_fingerprint() {
    const CpuIdentity &cpu = host_cpu();
    return cpu.vendor + "-" + std::to_string(cpu.family) + "-" + std::to_string(cpu.model);
}

bool cpu_matches(const char *store_cpu) {
    std::stringstream parts(store_cpu);
    std::string vendor, family, model;
    std::getline(parts, vendor, '|');
    std::getline(parts, family, '|');
    std::getline(parts, model, '|');
    const CpuIdentity &cpu = host_cpu();
    return vendor == cpu.vendor && family == std::to_string(cpu.family) &&
           (model.empty() || model == std::to_string(cpu.model));
}

}  // namespace smoe::runtime
