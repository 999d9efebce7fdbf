# Kernel packs: the compiled kernels of one build, with their headers and the build choices that
# shaped them, so that the operator library can be built elsewhere without Halide (a GPU machine
# with its own LibTorch; bench/gpu/README.md).
#
#   smoe_add_kernel_pack(<dir>)     target smoe_kernel_pack: writes the pack of this build into <dir>
#   smoe_import_kernel_pack(<dir>)  (-DSMOE_PREBUILT_KERNELS=<dir>) the pack's kernels as imported
#                                   libraries: SMOE_KERNEL_LIBRARIES, smoe_halide_runtime,
#                                   SMOE_KERNEL_INCLUDE_DIR and the build choices below.
#
# A pack: lib/ (the kernels' and the Halide runtime's static libraries), include/ (their headers,
# the generated dispatch headers and Halide's runtime headers) and smoe-kernels.cmake.
set(_smoe_pack_choices SMOE_CPU_TARGETS SMOE_CPU_DTYPES SMOE_CUDA SMOE_CUDA_CAPABILITY)

function(smoe_add_kernel_pack dir)
  set(files "")
  set(libs "")
  foreach (lib IN LISTS SMOE_KERNEL_LIBRARIES)
    list(APPEND files "${CMAKE_BINARY_DIR}/${lib}.h")
    list(APPEND libs "$<TARGET_FILE:${lib}>")
  endforeach ()
  set(manifest "# Written by smoe_add_kernel_pack (cmake/SmoeKernelPack.cmake).\n")
  foreach (choice IN LISTS _smoe_pack_choices)
    string(APPEND manifest "set(${choice} \"${${choice}}\")\n")
  endforeach ()
  string(APPEND manifest "set(SMOE_PACK_LIBRARIES \"${SMOE_KERNEL_LIBRARIES}\")\n")
  file(GENERATE OUTPUT "${CMAKE_BINARY_DIR}/kernel-pack/smoe-kernels.cmake" CONTENT "${manifest}")
  file(GENERATE OUTPUT "${CMAKE_BINARY_DIR}/kernel-pack/files.cmake" CONTENT
       "set(headers \"${files}\")\nset(dispatch_headers \"${SMOE_KERNEL_INCLUDE_DIR}\")\nset(libs \"${libs};$<TARGET_FILE:smoe_halide_runtime>\")\nset(runtime_headers \"$<TARGET_PROPERTY:Halide::Runtime,INTERFACE_INCLUDE_DIRECTORIES>\")\n")
  add_custom_target(smoe_kernel_pack
    COMMAND "${CMAKE_COMMAND}" -D "files=${CMAKE_BINARY_DIR}/kernel-pack/files.cmake"
            -D "manifest=${CMAKE_BINARY_DIR}/kernel-pack/smoe-kernels.cmake" -D "dir=${dir}"
            -P "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/SmoeCopyKernelPack.cmake"
    DEPENDS ${SMOE_KERNEL_LIBRARIES} smoe_halide_runtime
    COMMENT "Writing the kernel pack ${dir}"
    VERBATIM)
endfunction()

function(smoe_import_kernel_pack dir)
  if (NOT EXISTS "${dir}/smoe-kernels.cmake")
    message(FATAL_ERROR "smoe: SMOE_PREBUILT_KERNELS='${dir}' is not a kernel pack (no smoe-kernels.cmake; "
                        "the target smoe_kernel_pack of a build with Halide writes one)")
  endif ()
  include("${dir}/smoe-kernels.cmake")
  foreach (lib IN LISTS SMOE_PACK_LIBRARIES ITEMS smoe_halide_runtime)
    add_library(${lib} STATIC IMPORTED GLOBAL)
    set_target_properties(${lib} PROPERTIES IMPORTED_LOCATION "${dir}/lib/lib${lib}.a")
  endforeach ()
  set(SMOE_KERNEL_LIBRARIES ${SMOE_PACK_LIBRARIES} PARENT_SCOPE)
  set(SMOE_KERNEL_INCLUDE_DIR "${dir}/include" PARENT_SCOPE)
  foreach (choice IN LISTS _smoe_pack_choices)
    set(${choice} "${${choice}}" PARENT_SCOPE)
  endforeach ()
  message(STATUS "smoe: prebuilt kernels from ${dir}: CPU ${SMOE_CPU_DTYPES} on ${SMOE_CPU_TARGETS}; CUDA ${SMOE_CUDA}")
endfunction()
