// Multiply-accumulate rates of one core's vector units: the float32 FMA and the bf16 dot product
// (vdpbf16ps, AVX512_BF16), each on 24 independent 512-bit accumulators so that throughput, not
// latency, bounds the loop. What the bfloat16 pair_dots forward can gain over float32 FMAs on a CPU
// follows from the ratio of the two.
#include "instruction_rates.h"

#include <immintrin.h>

#include <chrono>

namespace smoe::bench {
namespace {

constexpr int kAccumulators = 24;
constexpr long kSteps = 2'000'000;
volatile float sums_sink;  // the accumulators' sum, so that the loops are kept

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

__attribute__((target("avx512f"))) double fma_seconds(float *sink) {
    __m512 acc[kAccumulators];
    for (__m512 &a : acc) a = _mm512_setzero_ps();
    __m512 a = _mm512_set1_ps(1e-8f);
    const __m512 b = _mm512_set1_ps(1.0f);
    const auto start = std::chrono::steady_clock::now();
    for (long step = 0; step < kSteps; ++step) {
#pragma GCC unroll 24
        for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
        __asm__ volatile("" : "+v"(a));  // keeps the loop from being folded
    }
    const double seconds = seconds_since(start);
    for (const __m512 &x : acc) *sink += _mm512_reduce_add_ps(x);
    return seconds;
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_seconds(float *sink) {
    __m512 acc[kAccumulators];
    for (__m512 &a : acc) a = _mm512_setzero_ps();
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // bfloat16 1.0
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80);
    const auto start = std::chrono::steady_clock::now();
    for (long step = 0; step < kSteps; ++step) {
#pragma GCC unroll 24
        for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a));
    }
    const double seconds = seconds_since(start);
    for (const __m512 &x : acc) *sink += _mm512_reduce_add_ps(x);
    return seconds;
}

}  // namespace

bool cpu_has_instruction(VectorInstruction instruction) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) return false;
    return instruction == VectorInstruction::fma_f32 || __builtin_cpu_supports("avx512bf16");
}

int multiply_accumulates_per_instruction(VectorInstruction instruction) {
    return instruction == VectorInstruction::fma_f32 ? 16 : 32;
}

double instruction_seconds(VectorInstruction instruction, long *instructions) {
    float sum = 0;
    const double seconds = instruction == VectorInstruction::fma_f32 ? fma_seconds(&sum) : bf16_dot_seconds(&sum);
    sums_sink = sum;
    *instructions = kSteps * kAccumulators;
    return seconds;
}

}  // namespace smoe::bench
