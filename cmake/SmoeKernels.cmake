# smoe_add_kernel(<name> GENERATOR <generator> [PARAMS ...])
#
# Compiles one generator variant into the kernel libraries the operator library links:
#   <name>_f32       CPU, one multi-target library: AVX-512 (Skylake), AVX2+FMA, baseline x86-64;
#                    the first target the running CPU supports is used.
#   <name>_f64       CPU, float64 (tests and gradcheck), AVX2+FMA with a baseline fallback.
#   <name>_f32_cuda  CUDA (cross-compiled PTX, JIT-compiled by the driver), when SMOE_CUDA is on.
# Every target has user_context: the runtime passes a per-call context for errors and CUDA state.
set(SMOE_CPU_TARGETS
    x86-64-linux-sse41-avx-avx2-f16c-fma-avx512-avx512_skylake-user_context
    x86-64-linux-sse41-avx-avx2-f16c-fma-user_context
    x86-64-linux-user_context)
set(SMOE_CPU_F64_TARGETS
    x86-64-linux-sse41-avx-avx2-f16c-fma-user_context
    x86-64-linux-user_context)
set(SMOE_CUDA_TARGET x86-64-linux-cuda-${SMOE_CUDA_CAPABILITY}-user_context)
set(SMOE_KERNEL_LIBRARIES "")

function(smoe_add_kernel name)
  cmake_parse_arguments(ARG "" "GENERATOR" "PARAMS" ${ARGN})
  set(variants f32 f64)
  set(f32_targets ${SMOE_CPU_TARGETS})
  set(f64_targets ${SMOE_CPU_F64_TARGETS})
  set(f32_type float32)
  set(f64_type float64)
  if (SMOE_CUDA)
    list(APPEND variants f32_cuda)
    set(f32_cuda_targets ${SMOE_CUDA_TARGET})
    set(f32_cuda_type float32)
  endif ()
  set(libs ${SMOE_KERNEL_LIBRARIES})
  foreach (variant IN LISTS variants)
    add_halide_library(${name}_${variant} FROM smoe_generators
      GENERATOR ${ARG_GENERATOR}
      FUNCTION_NAME ${name}_${variant}
      TARGETS ${${variant}_targets}
      PARAMS dtype=${${variant}_type} ${ARG_PARAMS}
      USE_RUNTIME smoe_halide_runtime)
    list(APPEND libs ${name}_${variant})
  endforeach ()
  set(SMOE_KERNEL_LIBRARIES ${libs} PARENT_SCOPE)
endfunction()
