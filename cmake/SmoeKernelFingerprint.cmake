# smoe_kernel_fingerprint(<out>): 12 hex digits of a hash over everything that decides what the
# kernels compute and how fast: the generators and schedules (tuned stores included), the kernel
# and variant definitions (cmake/SmoeKernels.cmake) and the toolchain pins (requirements.txt).
# Measured kernel choices are filed under it (runtime/variant_cache.h), so a build whose kernels
# changed measures again instead of reusing choices made for the old ones. Each file is a
# configure dependency: editing one re-runs CMake, so the fingerprint follows the sources.
function(smoe_kernel_fingerprint out)
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS
       "${CMAKE_SOURCE_DIR}/generators/*" "${CMAKE_SOURCE_DIR}/schedules/*")
  foreach (file IN ITEMS cmake/SmoeKernels.cmake requirements.txt)
    if (EXISTS "${CMAKE_SOURCE_DIR}/${file}")
      list(APPEND sources "${CMAKE_SOURCE_DIR}/${file}")
    endif ()
  endforeach ()
  list(SORT sources)
  set(digests "")
  foreach (source IN LISTS sources)
    file(SHA256 "${source}" digest)
    file(RELATIVE_PATH name "${CMAKE_SOURCE_DIR}" "${source}")
    string(APPEND digests "${name} ${digest}\n")
  endforeach ()
  set_property(DIRECTORY "${CMAKE_SOURCE_DIR}" APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${sources})
  string(SHA256 fingerprint "${digests}")
  string(SUBSTRING "${fingerprint}" 0 12 fingerprint)
  set(${out} "${fingerprint}" PARENT_SCOPE)
endfunction()
