// Vector multiply-accumulate rates of one core (bench/instruction_rates.cpp).
#pragma once

namespace smoe::bench {

enum class VectorInstruction { fma_f32, bf16_dot };  // vfmadd231ps zmm, vdpbf16ps zmm

bool cpu_has_instruction(VectorInstruction instruction);
int multiply_accumulates_per_instruction(VectorInstruction instruction);  // 16, 32
// Runs a fixed number of independent instructions; returns the seconds and their count.
double instruction_seconds(VectorInstruction instruction, long *instructions);

}  // namespace smoe::bench
