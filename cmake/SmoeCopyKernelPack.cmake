# cmake -D files=<list file> -D manifest=<smoe-kernels.cmake> -D dir=<pack> -P SmoeCopyKernelPack.cmake
# Copies a build's kernels into a kernel pack (cmake/SmoeKernelPack.cmake), replacing what was there.
include("${files}")
file(REMOVE_RECURSE "${dir}")
file(MAKE_DIRECTORY "${dir}/lib" "${dir}/include")
file(COPY ${libs} DESTINATION "${dir}/lib")
file(GLOB generated_headers "${dispatch_headers}/*.h")  # smoe_kernels.h and the variant lists
file(COPY ${headers} ${generated_headers} DESTINATION "${dir}/include")
foreach (include_dir IN LISTS runtime_headers)
  file(GLOB halide_headers "${include_dir}/HalideRuntime*.h" "${include_dir}/HalideBuffer.h")
  file(COPY ${halide_headers} DESTINATION "${dir}/include")
endforeach ()
file(COPY "${manifest}" DESTINATION "${dir}")
