# LibTorch from the project's Python environment, found through torch.utils.cpp_extension.
# find_package(Torch) is avoided on purpose: with a CUDA wheel it insists on a CUDA toolkit of
# the wheel's own version. Defines smoe::torch (CPU) and, when torch and the CUDA runtime headers
# are both there, smoe::torch_cuda.
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c [=[
import os, torch, torch.utils.cpp_extension as ext
print(':'.join(ext.include_paths()))
print(ext.library_paths()[0])
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.__version__)
print(torch.version.cuda or '')
spdir = os.path.dirname(os.path.dirname(torch.__file__))
print(','.join(os.path.join(spdir, 'nvidia', d, 'include') for d in ('cu13', 'cu12', 'cuda_runtime')))
]=]
  OUTPUT_VARIABLE _smoe_torch_info
  RESULT_VARIABLE _smoe_torch_rc
  ERROR_QUIET
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if (NOT _smoe_torch_rc EQUAL 0)
  message(FATAL_ERROR "smoe: could not import torch with ${Python_EXECUTABLE} (in this repository, "
                      "./smoe setup creates the environment)")
endif ()
string(REPLACE "\n" ";" _smoe_torch_info "${_smoe_torch_info}")
list(GET _smoe_torch_info 0 _torch_includes)
list(GET _smoe_torch_info 1 SMOE_TORCH_LIBDIR)
list(GET _smoe_torch_info 2 _torch_cxx11_abi)
list(GET _smoe_torch_info 3 SMOE_TORCH_VERSION)
list(GET _smoe_torch_info 4 SMOE_TORCH_CUDA_VERSION)
list(GET _smoe_torch_info 5 _torch_cuda_header_hints)
string(REPLACE ":" ";" _torch_includes "${_torch_includes}")
string(REPLACE "," ";" _torch_cuda_header_hints "${_torch_cuda_header_hints}")
message(STATUS "smoe: LibTorch ${SMOE_TORCH_VERSION} (CUDA '${SMOE_TORCH_CUDA_VERSION}') from ${SMOE_TORCH_LIBDIR}")

function(_smoe_torch_library out name)
  find_library(${out} NAMES ${name} PATHS "${SMOE_TORCH_LIBDIR}" NO_DEFAULT_PATH REQUIRED)
endfunction()
_smoe_torch_library(_lib_torch torch)
_smoe_torch_library(_lib_torch_cpu torch_cpu)
_smoe_torch_library(_lib_c10 c10)

add_library(smoe_torch INTERFACE)
add_library(smoe::torch ALIAS smoe_torch)
target_include_directories(smoe_torch SYSTEM INTERFACE ${_torch_includes})
target_compile_definitions(smoe_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_torch_cxx11_abi})
target_link_libraries(smoe_torch INTERFACE "${_lib_torch}" "${_lib_torch_cpu}" "${_lib_c10}")
# libtorch registers its operators from static initialisers: keep it linked even if unreferenced.
target_link_options(smoe_torch INTERFACE "LINKER:--no-as-needed")
set_property(TARGET smoe_torch PROPERTY INTERFACE_LINK_DIRECTORIES "${SMOE_TORCH_LIBDIR}")

# ATen's parallel_for is a header template: with LibTorch's OpenMP it is an OpenMP region compiled
# into the caller. runtime/halide_call.cpp runs Halide's parallel loops that way, so it compiles with
# -fopenmp and links the libgomp LibTorch ships: one OpenMP runtime, one thread team in the process.
find_library(SMOE_TORCH_GOMP NAMES libgomp.so.1 PATHS "${SMOE_TORCH_LIBDIR}" NO_DEFAULT_PATH)

set(SMOE_TORCH_HAS_CUDA OFF)
if (SMOE_TORCH_CUDA_VERSION)
  find_path(SMOE_CUDA_RUNTIME_INCLUDE cuda_runtime_api.h
            HINTS ${_torch_cuda_header_hints} ${CUDAToolkit_INCLUDE_DIRS}
            PATHS /usr/local/cuda/include)
  find_library(_lib_torch_cuda torch_cuda PATHS "${SMOE_TORCH_LIBDIR}" NO_DEFAULT_PATH)
  find_library(_lib_c10_cuda c10_cuda PATHS "${SMOE_TORCH_LIBDIR}" NO_DEFAULT_PATH)
  if (SMOE_CUDA_RUNTIME_INCLUDE AND _lib_torch_cuda AND _lib_c10_cuda)
    set(SMOE_TORCH_HAS_CUDA ON)
    add_library(smoe_torch_cuda INTERFACE)
    add_library(smoe::torch_cuda ALIAS smoe_torch_cuda)
    target_include_directories(smoe_torch_cuda SYSTEM INTERFACE "${SMOE_CUDA_RUNTIME_INCLUDE}")
    target_link_libraries(smoe_torch_cuda INTERFACE smoe::torch "${_lib_torch_cuda}" "${_lib_c10_cuda}")
  endif ()
endif ()
message(STATUS "smoe: CUDA operator glue: ${SMOE_TORCH_HAS_CUDA}")
