# smoe_add_kernel(<name> GENERATOR <generator> [PARAMS ...] [CPU_ONLY | CUDA_ONLY])
#
# Compiles one generator variant into the kernel libraries the operator library links:
#   <name>_f32       CPU, one multi-target library: AVX-512 (Skylake), AVX2+FMA, baseline x86-64;
#                    the first target the running CPU supports is used.
#   <name>_f64       CPU, float64 (tests and gradcheck: correctness, not speed), baseline x86-64.
#   <name>_f16, <name>_bf16
#                    CPU, float16 / bfloat16 storage with float32 arithmetic (generators/precision.h).
#                    The float64, float16 and bfloat16 kernels are built when SMOE_CPU_DTYPES has them.
#   <name>_f32_cuda, <name>_f16_cuda, <name>_bf16_cuda
#                    CUDA (cross-compiled PTX, JIT-compiled by the driver), when SMOE_CUDA is on
#                    and the kernel is not CPU_ONLY (CUDA_ONLY: these alone).
# Every target has user_context: the runtime passes a per-call context for errors and CUDA state.
# The CPU targets are cache variables: -DSMOE_CPU_TARGETS="x86-64-linux-avx2-fma-f16c-sse41-avx;x86-64-linux"
# builds for those ISAs only (best first; the last should be a baseline the oldest machine runs).
set(SMOE_CPU_TARGETS
    x86-64-linux-sse41-avx-avx2-f16c-fma-avx512-avx512_skylake
    x86-64-linux-sse41-avx-avx2-f16c-fma
    x86-64-linux
    CACHE STRING "Halide targets of the float32 CPU kernels, best first (a list)")
set(SMOE_CPU_F64_TARGETS
    x86-64-linux
    CACHE STRING "Halide targets of the float64 CPU kernels, best first (a list)")
set(SMOE_CPU_HALF_TARGETS
    x86-64-linux-sse41-avx-avx2-f16c-fma
    x86-64-linux
    CACHE STRING "Halide targets of the float16 and bfloat16 CPU kernels, best first (a list)")
# The CPU dtypes built: float32 always; a build without float64, float16 or bfloat16 kernels
# rejects tensors of that dtype with an error that names it (a short build, e.g. for packaging).
set(SMOE_CPU_DTYPES float32 float64 float16 bfloat16
    CACHE STRING "dtypes of the CPU kernels (a list; float32 is required)")
set(_smoe_known_dtypes float32 float64 float16 bfloat16)
if (NOT "float32" IN_LIST SMOE_CPU_DTYPES)
  message(FATAL_ERROR "smoe: SMOE_CPU_DTYPES must include float32, got '${SMOE_CPU_DTYPES}'")
endif ()
foreach (dtype IN LISTS SMOE_CPU_DTYPES)
  if (NOT dtype IN_LIST _smoe_known_dtypes)
    message(FATAL_ERROR "smoe: SMOE_CPU_DTYPES: '${dtype}' is not one of ${_smoe_known_dtypes}")
  endif ()
endforeach ()
# Every kernel takes a user context (errors and CUDA state per call); the runtime is shared.
function(_smoe_with_user_context out)
  set(targets "")
  foreach (target IN LISTS ARGN)
    if (NOT target MATCHES "^x86-64-linux")
      message(FATAL_ERROR "smoe: CPU target '${target}' must start with x86-64-linux (the runtime is x86-64 Linux)")
    endif ()
    string(REGEX REPLACE "-user_context" "" target "${target}")
    list(APPEND targets "${target}-user_context")
  endforeach ()
  if (NOT targets)
    message(FATAL_ERROR "smoe: SMOE_CPU_TARGETS, SMOE_CPU_F64_TARGETS and SMOE_CPU_HALF_TARGETS must each name at least one target")
  endif ()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()
# A build for this machine only (./smoe sets SMOE_HOST_TARGETS): the CPU targets its CPU cannot run
# are left out, by the test the runtime dispatches with (runtime/cpu_features.h, compiled into a
# probe here). Kernels of those targets would never run on it, and they are the slowest to compile
# (an AVX-512 kernel takes 2.5-3x the time of its AVX2 twin). What runs is unchanged.
option(SMOE_HOST_TARGETS "Build the CPU kernels only for the targets this machine runs (./smoe sets it)" OFF)
if (SMOE_HOST_TARGETS)
  set(_smoe_target_probe "${CMAKE_BINARY_DIR}/probes/cpu_runs_targets")
  try_compile(_smoe_probe_built
    SOURCES "${CMAKE_CURRENT_LIST_DIR}/probes/cpu_runs_targets.cpp" "${PROJECT_SOURCE_DIR}/runtime/cpu_features.cpp"
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${PROJECT_SOURCE_DIR}/runtime"
    CXX_STANDARD 20
    COPY_FILE "${_smoe_target_probe}"
    OUTPUT_VARIABLE _smoe_probe_log)
  if (NOT _smoe_probe_built)
    message(FATAL_ERROR "smoe: SMOE_HOST_TARGETS: the CPU probe did not compile:\n${_smoe_probe_log}")
  endif ()
endif ()

# _smoe_host_targets(<out> <targets>...): the targets this machine runs; all of them without
# SMOE_HOST_TARGETS.
function(_smoe_host_targets out)
  set(targets ${ARGN})
  if (NOT SMOE_HOST_TARGETS OR NOT targets)
    set(${out} ${targets} PARENT_SCOPE)
    return()
  endif ()
  execute_process(COMMAND "${_smoe_target_probe}" ${targets} OUTPUT_VARIABLE answers RESULT_VARIABLE rc)
  string(STRIP "${answers}" answers)
  string(REPLACE "\n" ";" answers "${answers}")
  list(LENGTH targets count)
  list(LENGTH answers answer_count)
  if (NOT rc EQUAL 0 OR NOT count EQUAL answer_count)
    message(FATAL_ERROR "smoe: SMOE_HOST_TARGETS: the CPU probe failed (${rc}) on ${targets}")
  endif ()
  set(runs "")
  foreach (target answer IN ZIP_LISTS targets answers)
    if (answer STREQUAL "1")
      list(APPEND runs ${target})
    else ()
      message(STATUS "smoe: not built for ${target}: this machine's CPU does not run it (SMOE_HOST_TARGETS)")
    endif ()
  endforeach ()
  set(${out} ${runs} PARENT_SCOPE)
endfunction()

# The list as configured: tuned stores are checked against it, and the bfloat16 variants of its
# best target are built only where that runs.
set(_smoe_configured_cpu_targets ${SMOE_CPU_TARGETS})
list(GET SMOE_CPU_TARGETS 0 _smoe_best_cpu_target)
foreach (list_name IN ITEMS SMOE_CPU_TARGETS SMOE_CPU_F64_TARGETS SMOE_CPU_HALF_TARGETS)
  _smoe_host_targets(_smoe_runs ${${list_name}})
  if (_smoe_runs)
    set(${list_name} ${_smoe_runs})
  else ()
    message(WARNING "smoe: this machine's CPU runs none of ${list_name} (${${list_name}}): building them all")
  endif ()
endforeach ()

_smoe_with_user_context(_smoe_f32_targets ${SMOE_CPU_TARGETS})
_smoe_with_user_context(_smoe_f64_targets ${SMOE_CPU_F64_TARGETS})
_smoe_with_user_context(_smoe_half_targets ${SMOE_CPU_HALF_TARGETS})
# Halide 21 knows these; newer GPUs (Hopper: H100, H200) JIT-compile the PTX of the highest.
if (NOT SMOE_CUDA_CAPABILITY MATCHES "^cuda_capability_(30|32|35|50|61|70|75|80|86)$")
  message(FATAL_ERROR "smoe: SMOE_CUDA_CAPABILITY must be a Halide 21 CUDA feature, cuda_capability_NN with NN one "
                      "of 30 32 35 50 61 70 75 80 86 (80: A100 and newer), got '${SMOE_CUDA_CAPABILITY}'")
endif ()
set(SMOE_CUDA_TARGET x86-64-linux-cuda-${SMOE_CUDA_CAPABILITY}-user_context)
set(SMOE_KERNEL_LIBRARIES "")

function(smoe_add_kernel name)
  cmake_parse_arguments(ARG "CPU_ONLY;CUDA_ONLY" "GENERATOR" "PARAMS" ${ARGN})
  set(f32_targets ${_smoe_f32_targets})
  set(f64_targets ${_smoe_f64_targets})
  set(f16_targets ${_smoe_half_targets})
  set(bf16_targets ${_smoe_half_targets})
  set(f32_type float32)
  set(f64_type float64)
  set(f16_type float16)
  set(bf16_type bfloat16)
  set(variants "")
  foreach (type IN ITEMS f32 f64 f16 bf16)
    if ("${${type}_type}" IN_LIST SMOE_CPU_DTYPES AND NOT ARG_CUDA_ONLY)
      list(APPEND variants ${type})
    endif ()
  endforeach ()
  if (SMOE_CUDA AND NOT ARG_CPU_ONLY)
    foreach (type IN ITEMS f32 f16 bf16)
      list(APPEND variants ${type}_cuda)
      set(${type}_cuda_targets ${SMOE_CUDA_TARGET})
      set(${type}_cuda_type ${${type}_type})
    endforeach ()
  endif ()
  set(libs ${SMOE_KERNEL_LIBRARIES})
  # Tuned knobs of this op for one CPU target (cmake/SmoeTunedStore.cmake), float32 only.
  string(REGEX REPLACE "^smoe_" "" op "${ARG_GENERATOR}")
  set(f32_knobs "")
  if (SMOE_KNOBS_${op})
    set(f32_knobs "knobs=${SMOE_KNOBS_${op}}" "knobs_target=${SMOE_KNOBS_TARGET_${op}}")
  endif ()
  foreach (variant IN LISTS variants)
    set(knob_params "")
    if (variant STREQUAL "f32")
      set(knob_params ${f32_knobs})
    endif ()
    add_halide_library(${name}_${variant} FROM smoe_generators
      GENERATOR ${ARG_GENERATOR}
      FUNCTION_NAME ${name}_${variant}
      TARGETS ${${variant}_targets}
      PARAMS dtype=${${variant}_type} ${ARG_PARAMS} ${knob_params}
      USE_RUNTIME smoe_halide_runtime)
    list(APPEND libs ${name}_${variant})
  endforeach ()
  set(SMOE_KERNEL_LIBRARIES ${libs} PARENT_SCOPE)
endfunction()

# The routing variants a kernel is built in, as routing:gating (shared|per_sample,
# unweighted|weighted): both routings, or shared alone when `routings` is "shared"; both gatings,
# or weighted alone when `gatings` is "weighted" (a gated kernel, which serves unweighted calls too).
function(_smoe_routing_variants routings gatings out)
  set(variants "")
  foreach (routing IN ITEMS shared per_sample)
    if (routings STREQUAL "shared" AND routing STREQUAL "per_sample")
      continue()
    endif ()
    foreach (gating IN ITEMS unweighted weighted)
      if (gatings STREQUAL "weighted" AND gating STREQUAL "unweighted")
        continue()
      endif ()
      list(APPEND variants "${routing}:${gating}")
    endforeach ()
  endforeach ()
  set(${out} ${variants} PARENT_SCOPE)
endfunction()

# A routing variant's names and generator parameters: routing, gating, shared_routing=, weighted=.
function(_smoe_routing_flags variant routing_out gating_out shared_out weighted_out)
  string(REPLACE ":" ";" names "${variant}")
  list(GET names 0 routing)
  list(GET names 1 gating)
  set(shared false)
  set(weighted false)
  if (routing STREQUAL "shared")
    set(shared true)
  endif ()
  if (gating STREQUAL "weighted")
    set(weighted true)
  endif ()
  set(${routing_out} ${routing} PARENT_SCOPE)
  set(${gating_out} ${gating} PARENT_SCOPE)
  set(${shared_out} ${shared} PARENT_SCOPE)
  set(${weighted_out} ${weighted} PARENT_SCOPE)
endfunction()

# smoe_add_routing_variants(<name> GENERATOR <generator> [GATED])
#
# The four variants of an SMoE kernel, <name>_{shared,per_sample}_{unweighted,weighted}, each
# through smoe_add_kernel. GATED: the weighted CPU kernels serve unweighted calls too, with unit
# gates (x·1 = x exactly; runtime/kernel_registry.cpp), so the unweighted ones are built for CUDA
# only. That halves the CPU kernels of the ops whose gate is one multiply per output or error
# element, and their build time.
function(smoe_add_routing_variants name)
  cmake_parse_arguments(ARG "GATED" "GENERATOR" "" ${ARGN})
  set(libs ${SMOE_KERNEL_LIBRARIES})
  _smoe_routing_variants(all all routing_variants)
  foreach (variant IN LISTS routing_variants)
    _smoe_routing_flags(${variant} routing gating shared_flag weighted_flag)
    set(devices "")
    if (ARG_GATED AND gating STREQUAL "unweighted")
      if (NOT SMOE_CUDA)
        continue()
      endif ()
      set(devices CUDA_ONLY)
    endif ()
    set(SMOE_KERNEL_LIBRARIES ${libs})
    smoe_add_kernel(${name}_${routing}_${gating} GENERATOR ${ARG_GENERATOR} ${devices}
                    PARAMS shared_routing=${shared_flag} weighted=${weighted_flag})
    set(libs ${SMOE_KERNEL_LIBRARIES})
  endforeach ()
  set(SMOE_KERNEL_LIBRARIES ${libs} PARENT_SCOPE)
endfunction()

# smoe_write_kernel_header(<path>): one header that includes every kernel's generated header.
function(smoe_write_kernel_header path)
  set(lines "// Generated by CMake: the headers of every compiled kernel.\n#pragma once\n")
  foreach (lib IN LISTS SMOE_KERNEL_LIBRARIES)
    string(APPEND lines "#include \"${lib}.h\"\n")
  endforeach ()
  file(CONFIGURE OUTPUT "${path}" CONTENT "${lines}" @ONLY)
endfunction()

# --- Formulation variants ------------------------------------------------------------------------
# float32 CPU kernels of an op in another formulation (a knob that changes the loop nest, or a
# generator parameter that changes the summation order), built for every CPU target beside the
# regular kernel: op|name|generator params (comma-separated; several knobs of one param joined by
# "+")|routings (all, shared)|shape classes it is chosen for when measurement is off (the first
# listed for the class, none: measured only; a leading "=": measured for those classes only)[|a
# target feature it needs, e.g. avx512]. With measurement on (the default) every variant of the op
# competes for every shape (runtime/variant_cache.h), but those marked "=" for their classes only.
# Shapes of fewer than 8 channels keep the regular data gradient, whose pixel tiles and row vectors
# suit them, and take the forward's row vectors and the weight gradient's masked rows. The variants are
# built for the AVX2-or-better targets of SMOE_CPU_TARGETS only (all of them when it has none), or
# for those with the feature: on an older CPU the regular kernels serve every shape and the variants
# are not listed (runtime/kernel_registry.cpp).
#
# pixel_tiles_16: the regular forward with register tiles of 16 accumulators instead of 24 (3/4 of
# AVX-512's registers). On an Intel Xeon (family 6 model 207) it ran 8-9% faster at 16 to 32 samples
# (cifar 7.93 against 8.65 ms, JIT); on AVX2, 16 accumulators take every register (36 against 20 ms),
# so it is built for AVX-512 only.
#
# channel_dots_4: the channel dots with register tiles of 4 samples x 6 slots instead of 8 x 3 on
# AVX-512: 10 instead of 11 loads per 24 FMAs, but each gathered weight vector serves half the
# samples. On an Intel Xeon (family 6 model 207, 2 MiB L2, JIT) 1-3% faster at 8 samples and 6% at
# 4 to 6 while the bank fits L2 (weatherbench 16.7 against 16.9 ms, NE/E = 4 9.10 against 9.41), 8%
# slower once it does not (NE = 512: 11.8 against 10.9), so it is measured only.
#
# row_vectors: the forward vectorised along grid rows (schedules/cpu/forward_row_vectors.cpp), for
# layers with few channels, which the pixel tiles serve through a batch-innermost copy of the input.
# Measured for those classes only: it gathers every tap's weight of a task's rows for every output
# channel, 0.96 s against the regular 57 ms at weatherbench (JIT), where timing it once would make a
# new shape's first call that much slower.
# AVX2 (AMD EPYC family 25 model 1, JIT): heat (B32 C1 64x64 NE3 E1) 0.125 against the regular
# kernel's 0.331 ms (0.251 with the heat class's former tuned knobs), B1 0.016 against 0.039, B32 C3
# NE6 E2 0.610 against 1.145.
#
# masked_rows: the weight gradient summed densely over every expert row along grid rows, each row's
# dŷ masked by comparing the routing (schedules/cpu/masked_rows.cpp), for layers with few channels,
# experts and slots. NE/E times the sparse products, and every pixel tests NE x E (row, slot)
# pairs, so it is measured for those classes only: at B8 C4 32x64 NE256 E64 it took 58.6 against
# the regular kernel's 16.2 ms. AVX2 (AMD EPYC family 25 model 1, JIT, ms): heat 0.146 against the
# band lanes' 0.28-0.50 (the heat class's tuned knobs) and the regular kernel's 0.62; heat at B1 0.017
# against 0.079 and 0.111; B32 C3 NE6 E2 0.638 against 1.77 and 2.56; B8 C4 32x32 NE8 E4 0.109
# (tiles of 4 expert rows) against 0.583 and 0.544.
set(SMOE_FORMULATION_VARIANTS
    "forward|union_tiles|union_tiles=true|shared|b1-3_c8+"
    "forward|row_vectors|knobs=row_vectors:1|shared|=b1-3_c1-7,b4+_c1-7"
    "forward|channel_dots|knobs=formulation:1|all|b1-3_c8+,b4+_c8+"
    "forward|pixel_tiles_16|knobs=accumulators:16|all|none|avx512"
    "forward|channel_dots_4|knobs=formulation:1+dot_batch:4|all|none|avx512"
    "backward_data|channel_axpys|knobs=formulation:1|all|b1-3_c8+,b4+_c8+"
    "backward_weight|slot_sweeps|knobs=formulation:2|shared|b4+_c8+"
    "backward_weight|dense_rows|dense_rows=true|shared|b1-3_c8+"
    "backward_weight|masked_rows|dense_rows=true,masked_rows=true|shared|=b1-3_c1-7,b4+_c1-7"
    "backward_weight|expert_groups|group_pixels=192,batched_group_pixels=32|shared|b1-3_c8+")

option(SMOE_CPU_FORMULATIONS "Build the formulation variants of the float32 CPU kernels" ON)

# A variant's generator params as a list: they are separated by commas, and several knobs of one
# param are joined by "+" (knobs=a:1+b:2 becomes knobs=a:1,b:2).
function(_smoe_param_list params out)
  string(REPLACE "," ";" list "${params}")
  string(REPLACE "+" "," list "${list}")
  set(${out} "${list}" PARENT_SCOPE)
endfunction()

# One CPU kernel of an op's generator beside its regular ones: a formulation, tuned or bfloat16
# variant.
function(_smoe_add_cpu_variant name op dtype targets shared weighted)
  add_halide_library(${name} FROM smoe_generators
    GENERATOR smoe_${op}
    FUNCTION_NAME ${name}
    TARGETS ${targets}
    PARAMS dtype=${dtype} shared_routing=${shared} weighted=${weighted} ${ARGN}
    USE_RUNTIME smoe_halide_runtime)
endfunction()

# smoe_add_formulation_variants(<header>): their kernels and the header runtime/ dispatches with.
function(smoe_add_formulation_variants header)
  set(libs ${SMOE_KERNEL_LIBRARIES})
  set(targets "")
  foreach (target IN LISTS _smoe_f32_targets)
    if (target MATCHES "-avx2")
      list(APPEND targets ${target})
    endif ()
  endforeach ()
  if (NOT targets)
    set(targets ${_smoe_f32_targets})
  endif ()
  set(lines "// Generated by CMake: the formulation variants of the float32 CPU kernels.\n#pragma once\n")
  string(APPEND lines "// X(op, shared_routing, name, generator params, shape classes, least target, function);\n")
  string(APPEND lines "// gated kernels, listed where the CPU runs the least target they are built for\n")
  string(APPEND lines "#define SMOE_FORMULATION_VARIANT_LIST(X) \\\n")
  set(variants ${SMOE_FORMULATION_VARIANTS})
  if (NOT SMOE_CPU_FORMULATIONS)
    set(variants "")
  endif ()
  foreach (variant IN LISTS variants)
    string(REPLACE "|" ";" fields "${variant}")
    list(GET fields 0 op)
    list(GET fields 1 variant_name)
    list(GET fields 2 params)
    list(GET fields 3 routings)
    list(GET fields 4 classes)
    set(variant_targets ${targets})
    list(LENGTH fields field_count)
    if (field_count GREATER 5)
      list(GET fields 5 feature)
      list(FILTER variant_targets INCLUDE REGEX "-${feature}(-|$)")
      if (NOT variant_targets)
        continue()
      endif ()
    endif ()
    list(GET variant_targets -1 least_target)
    string(REPLACE "-user_context" "" least_target "${least_target}")
    _smoe_param_list("${params}" param_list)
    _smoe_routing_variants(${routings} weighted routing_variants)
    foreach (routing_variant IN LISTS routing_variants)
      _smoe_routing_flags(${routing_variant} routing gating shared_flag weighted_flag)
      set(name smoe_${op}_${routing}_${gating}_${variant_name}_f32)
      _smoe_add_cpu_variant(${name} ${op} float32 "${variant_targets}" ${shared_flag} ${weighted_flag} ${param_list})
      list(APPEND libs ${name})
      string(APPEND lines "    X(${op}, ${shared_flag}, \"${variant_name}\", \"${params}\", \"${classes}\", "
                          "\"${least_target}\", ${name}) \\\n")
    endforeach ()
  endforeach ()
  string(APPEND lines "\n")
  file(CONFIGURE OUTPUT "${header}" CONTENT "${lines}" @ONLY)
  set(SMOE_KERNEL_LIBRARIES ${libs} PARENT_SCOPE)
endfunction()

# --- bfloat16 and float16 variants --------------------------------------------------------------
# The regular bfloat16 kernels (SMOE_CPU_HALF_TARGETS) serve every shape; the forward and the
# expert-side gradients have more, chosen at run time like the float32 formulations
# (runtime/kernel_registry.cpp): the float32 formulation variants built for bfloat16 storage, their
# operands widened to float32 when re-laid out (float32 FMAs), for the best of SMOE_CPU_TARGETS
# (AVX-512 by default; none if it lacks AVX2), and `pair_dots`, the forward's channel dots whose
# pairs of bfloat16 products one bf16 dot-product instruction sums (bf16_pairs in
# generators/forward_generator.cpp), and `pair_sweeps` (16 with blocks of 16 samples), the weight
# gradient's slot sweeps summing pairs of samples the same way, for CPUs with AVX512_BF16
# (SMOE_CPU_BF16_DOT_TARGET; empty: not built), and `amx_tiles`, the forward as one dense product
# over all experts per strip of pixels on AMX tiles, then each channel's expert row (dense_tiles),
# for CPUs with AMX (SMOE_CPU_AMX_TARGET; empty: not built), and the gradients' `amx_tiles`, dŷ
# scattered onto every expert row, then dense products on the tiles the same way (the data gradient
# per strip of pixels, the weight gradient per tap over blocks of pixels). Shared routing only: the
# tensor routing of the weather networks, and a short build.
# op|name|target (best: the best of SMOE_CPU_TARGETS; dot, amx: the targets above)|generator params|routings.
option(SMOE_CPU_BF16_VARIANTS "Build the bfloat16 variants of the forward and the expert-side gradients" ON)
set(SMOE_CPU_BF16_DOT_TARGET
    x86-64-linux-sse41-avx-avx2-f16c-fma-avx512-avx512_skylake-avx512_cannonlake-avx512_zen4
    CACHE STRING "Halide target of the bfloat16 pair_dots forward (empty: not built)")
set(SMOE_CPU_AMX_TARGET
    x86-64-linux-sse41-avx-avx2-f16c-fma-avx512-avx512_skylake-avx512_cannonlake-avx512_sapphirerapids-avxvnni
    CACHE STRING "Halide target of the bfloat16 amx_tiles kernels (empty: not built)")
# Each op's first variant this CPU runs serves its bfloat16 calls when measurement is off
# (runtime/kernel_registry.cpp).
set(SMOE_BF16_VARIANTS
    "forward|amx_tiles|amx|dense_tiles=true|shared"
    "forward|channel_dots|best|knobs=formulation:1|shared"
    "forward|pair_dots|dot|bf16_pairs=true,knobs=formulation:1|shared"
    "backward_data|amx_tiles|amx|dense_tiles=true|shared"
    "backward_data|channel_axpys|best|knobs=formulation:1|shared"
    "backward_weight|amx_tiles|amx|dense_tiles=true|shared"
    "backward_weight|slot_sweeps|best|knobs=formulation:2|shared"
    "backward_weight|pair_sweeps|dot|bf16_pairs=true,knobs=formulation:2|shared"
    "backward_weight|pair_sweeps_16|dot|bf16_pairs=true,knobs=formulation:2+sample_block:16+channel_vectors:2|shared")

# float16 has the float32 formulation variants on float16 storage (widened to float32 FMAs), for
# the best of SMOE_CPU_TARGETS like bfloat16's: the regular float16 kernels are built for
# SMOE_CPU_HALF_TARGETS (AVX2 at best), and on an AVX-512 CPU these run 1.6x (forward) to 6x (data
# gradient) faster at weatherbench (bench/RESULTS.md). No float16 arithmetic: float16 sums of
# thousands of products would lose most of their digits.
option(SMOE_CPU_F16_VARIANTS "Build the float16 variants of the forward and the expert-side gradients" ON)
set(SMOE_F16_VARIANTS
    "forward|channel_dots|best|knobs=formulation:1|shared"
    "backward_data|channel_axpys|best|knobs=formulation:1|shared"
    "backward_weight|slot_sweeps|best|knobs=formulation:2|shared")

# smoe_add_half_variants(<header>): their kernels, smoe_<op>_<routing>_<gating>_{bf16,f16}_<name>,
# and the header runtime/ dispatches with (SMOE_BF16_VARIANT_LIST, SMOE_F16_VARIANT_LIST).
function(smoe_add_half_variants header)
  set(libs ${SMOE_KERNEL_LIBRARIES})
  set(lines "// Generated by CMake: the bfloat16 and float16 variants this build has.\n#pragma once\n")
  string(APPEND lines "// X(op, shared_routing, name, target, function); gated kernels\n")
  # The targets of the lists' "best", "dot" and "amx" fields, for both dtypes.
  set(best_target "")
  if (_smoe_best_cpu_target IN_LIST SMOE_CPU_TARGETS)  # still there after SMOE_HOST_TARGETS
    set(best_target "${_smoe_best_cpu_target}")
  endif ()
  _smoe_host_targets(dot_target ${SMOE_CPU_BF16_DOT_TARGET})
  _smoe_host_targets(amx_target ${SMOE_CPU_AMX_TARGET})
  foreach (suffix IN ITEMS bf16 f16)
    _smoe_add_half_variant_list(${suffix} libs lines)
  endforeach ()
  file(CONFIGURE OUTPUT "${header}" CONTENT "${lines}" @ONLY)
  set(SMOE_KERNEL_LIBRARIES ${libs} PARENT_SCOPE)
endfunction()

# One dtype's variants (suffix bf16 or f16): their kernels appended to the list `libs_var`, their
# list macro to the header text `lines_var`; best_target, dot_target and amx_target come from
# smoe_add_half_variants.
function(_smoe_add_half_variant_list suffix libs_var lines_var)
  set(libs ${${libs_var}})
  set(lines "${${lines_var}}")
  string(TOUPPER "${suffix}" upper)
  set(bf16_dtype bfloat16)
  set(f16_dtype float16)
  set(dtype ${${suffix}_dtype})
  string(APPEND lines "#define SMOE_${upper}_VARIANT_LIST(X) \\\n")
  set(variants "")
  if (SMOE_CPU_${upper}_VARIANTS AND dtype IN_LIST SMOE_CPU_DTYPES)
    set(variants ${SMOE_${upper}_VARIANTS})
  endif ()
  foreach (variant IN LISTS variants)
    string(REPLACE "|" ";" fields "${variant}")
    list(GET fields 0 op)
    list(GET fields 1 variant_name)
    list(GET fields 2 which_target)
    list(GET fields 3 params)
    list(GET fields 4 routings)
    _smoe_param_list("${params}" params)
    # Not built: a target this machine does not run (SMOE_HOST_TARGETS), an empty one, or a best
    # target without AVX2.
    set(cpu_target "${${which_target}_target}")
    if (NOT cpu_target OR (which_target STREQUAL "best" AND NOT cpu_target MATCHES "-avx2"))
      continue()
    endif ()
    _smoe_with_user_context(target ${cpu_target})
    _smoe_routing_variants(${routings} weighted routing_variants)
    foreach (routing_variant IN LISTS routing_variants)
      _smoe_routing_flags(${routing_variant} routing gating shared_flag weighted_flag)
      set(name smoe_${op}_${routing}_${gating}_${suffix}_${variant_name})
      _smoe_add_cpu_variant(${name} ${op} ${dtype} "${target}" ${shared_flag} ${weighted_flag} ${params})
      list(APPEND libs ${name})
      string(APPEND lines "    X(${op}, ${shared_flag}, \"${variant_name}\", \"${cpu_target}\", ${name}) \\\n")
    endforeach ()
  endforeach ()
  string(APPEND lines "\n")
  set(${libs_var} ${libs} PARENT_SCOPE)
  set(${lines_var} "${lines}" PARENT_SCOPE)
endfunction()

# --- Tuned stores -------------------------------------------------------------------------------
# Every store in SMOE_TUNED_STORES (default: schedules/tuned/*.json) that passes validation, was
# tuned on a CPU that SMOE_TUNED_CPUS selects and targets one of SMOE_CPU_TARGETS is used in one
# of two ways (README "Tuning"):
#   forward, backward_data, backward_weight: each shape class whose knobs differ from the defaults
#     becomes a tuned float32 kernel for the store's target; at run time, calls of that class use
#     it when the CPU runs that target and is the store's CPU (runtime/kernel_registry.cpp).
#   route_topk, error_quantile, rc_loss, gate_gradient: the knobs of class b4+_c8+ (else the first
#     entry) go into the regular float32 kernels, applied to the store's target only, from stores
#     of the build machine's own CPU only (a regular kernel serves every CPU).
option(SMOE_TUNED "Build the tuned schedules of SMOE_TUNED_STORES" ON)
set(SMOE_TUNED_CPUS "host" CACHE STRING
    "Tuned stores to compile: host (those tuned on this build machine's CPU) or all (every CPU's)")
set_property(CACHE SMOE_TUNED_CPUS PROPERTY STRINGS host all)
if (NOT SMOE_TUNED_CPUS MATCHES "^(host|all)$")
  message(FATAL_ERROR "smoe: SMOE_TUNED_CPUS must be host or all, got '${SMOE_TUNED_CPUS}'")
endif ()
if (NOT DEFINED SMOE_TUNED_STORES)
  file(GLOB SMOE_TUNED_STORES CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/schedules/tuned/*.json")
endif ()
include(${CMAKE_CURRENT_LIST_DIR}/SmoeTunedStore.cmake)
smoe_host_cpu(SMOE_HOST_CPU)
set(SMOE_TUNED_VARIANTS "")  # op|class|knobs|target|cpu of each tuned kernel variant
set(_smoe_variant_ops forward backward_data backward_weight)
if (SMOE_TUNED)
  # Stores in the order of their targets in SMOE_CPU_TARGETS, best first: at run time the first
  # variant of a class whose target and CPU match is used.
  set(_smoe_valid_stores "")
  foreach (store IN LISTS SMOE_TUNED_STORES)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${store}")
    smoe_read_tuned_store("${store}" "${Halide_VERSION}" "${_smoe_configured_cpu_targets}" _store)
    if (_store_VALID)
      smoe_cpu_matches("${_store_CPU}" "${SMOE_HOST_CPU}" _on_host)
      if (_on_host OR SMOE_TUNED_CPUS STREQUAL "all")
        list(APPEND _smoe_valid_stores "${store}")
      else ()
        message(STATUS "smoe: tuned store ${store} is for another CPU (${_store_CPU}; this one: ${SMOE_HOST_CPU}): "
                       "not compiled (-DSMOE_TUNED_CPUS=all compiles it)")
      endif ()
    endif ()
  endforeach ()
  foreach (cpu_target IN LISTS SMOE_CPU_TARGETS)
    _smoe_target_key("${cpu_target}" cpu_key)
    foreach (store IN LISTS _smoe_valid_stores)
      smoe_read_tuned_store("${store}" "${Halide_VERSION}" "${_smoe_configured_cpu_targets}" _store)
      _smoe_target_key("${_store_TARGET}" store_key)
      if (NOT store_key STREQUAL cpu_key)
        continue()
      endif ()
      smoe_cpu_matches("${_store_CPU}" "${SMOE_HOST_CPU}" _on_host)
      message(STATUS "smoe: tuned store ${store} (${_store_TARGET}, CPU ${_store_CPU})")
      foreach (entry IN LISTS _store_ENTRIES)
        string(REPLACE "|" ";" fields "${entry}")
        list(GET fields 0 op)
        list(GET fields 1 class)
        list(LENGTH fields n)
        set(knobs "")
        if (n GREATER 2)
          list(GET fields 2 knobs)
        endif ()
        if (op IN_LIST _smoe_variant_ops)
          # Knobs that only pick a formulation variant's own schedule add no kernel: the variant
          # is built for every target anyway.
          set(duplicate FALSE)
          foreach (formulation IN LISTS SMOE_FORMULATION_VARIANTS)
            if (formulation MATCHES "^${op}\\|[^|]*\\|knobs=${knobs}\\|")
              set(duplicate TRUE)
            endif ()
          endforeach ()
          if (NOT knobs STREQUAL "" AND NOT duplicate)
            list(APPEND SMOE_TUNED_VARIANTS "${op}|${class}|${knobs}|${_store_TARGET}|${_store_CPU}")
          endif ()
        elseif (_on_host AND (NOT DEFINED SMOE_KNOBS_CLASS_${op} OR
                (class STREQUAL "b4+_c8+" AND SMOE_KNOBS_TARGET_${op} STREQUAL _store_TARGET)))
          # The best target's store; within it, class b4+_c8+ if tuned.
          set(SMOE_KNOBS_${op} "${knobs}")
          set(SMOE_KNOBS_TARGET_${op} "${_store_TARGET}")
          set(SMOE_KNOBS_CLASS_${op} "${class}")
        endif ()
      endforeach ()
    endforeach ()
  endforeach ()
endif ()

# smoe_add_tuned_variants(): the tuned kernels of SMOE_TUNED_VARIANTS, gated, in both routings
# each, plus the generated header runtime/ dispatches with (smoe_tuned_variants.h).
function(smoe_add_tuned_variants header)
  set(libs ${SMOE_KERNEL_LIBRARIES})
  set(lines "// Generated by CMake from the tuned stores: the tuned float32 CPU kernels.\n#pragma once\n")
  string(APPEND lines "// X(op, shared_routing, shape_class, knobs, target, cpu, function), cpu as vendor|family|model; gated kernels\n")
  string(APPEND lines "#define SMOE_TUNED_VARIANT_LIST(X) \\\n")
  foreach (variant IN LISTS SMOE_TUNED_VARIANTS)
    string(REPLACE "|" ";" fields "${variant}")
    list(GET fields 0 op)
    list(GET fields 1 class)
    list(GET fields 2 knobs)
    list(GET fields 3 target)
    list(GET fields 4 vendor)
    list(GET fields 5 family)
    list(LENGTH fields field_count)
    set(model "")
    if (field_count GREATER 6)
      list(GET fields 6 model)
    endif ()
    string(REPLACE "+" "p" class_id "${class}")
    string(MAKE_C_IDENTIFIER "${class_id}" class_id)
    string(MD5 target_hash "${target}|${vendor}|${family}|${model}")
    string(SUBSTRING "${target_hash}" 0 6 target_hash)
    _smoe_routing_variants(all weighted routing_variants)
    foreach (routing_variant IN LISTS routing_variants)
      _smoe_routing_flags(${routing_variant} routing gating shared_flag weighted_flag)
      set(name smoe_${op}_${routing}_${gating}_tuned_${class_id}_${target_hash})
      _smoe_add_cpu_variant(${name} ${op} float32 "${target}-user_context" ${shared_flag} ${weighted_flag}
                            knobs=${knobs})
      list(APPEND libs ${name})
      string(APPEND lines "    X(${op}, ${shared_flag}, \"${class}\", \"${knobs}\", \"${target}\", \"${vendor}|${family}|${model}\", ${name}) \\\n")
    endforeach ()
  endforeach ()
  string(APPEND lines "\n")
  file(CONFIGURE OUTPUT "${header}" CONTENT "${lines}" @ONLY)
  set(SMOE_KERNEL_LIBRARIES ${libs} PARENT_SCOPE)
endfunction()
