# Installation, in one of two layouts:
#   C++ (`cmake --install build --prefix P`): P/lib/libsmoe_ops.so, P/include/smoe/{smoe_ops.h,
#     modules.h} and the CMake package P/lib/cmake/SpatialMoE, so that a project can
#     `find_package(SpatialMoE)` and link `SpatialMoE::smoe`.
#   Python (`pip install .`; scikit-build-core sets SKBUILD): the package `smoe` with
#     libsmoe_ops.so inside it, next to __init__.py, which loads it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

target_compile_features(smoe_ops PUBLIC cxx_std_20)

if (SKBUILD)
  install(TARGETS smoe_ops LIBRARY DESTINATION smoe)
  install(FILES ${SMOE_PYTHON_SOURCES} DESTINATION smoe)
  # `import torch` has loaded LibTorch before the package loads the library; the rpath finds the
  # same libraries in the environment's torch package for anything loaded without it.
  set_target_properties(smoe_ops PROPERTIES INSTALL_RPATH "$ORIGIN/../torch/lib")
  return()
endif ()

# The library was built against this LibTorch and only runs with it.
set_target_properties(smoe_ops PROPERTIES INSTALL_RPATH "${SMOE_TORCH_LIBDIR}")
set(_smoe_package_dir "${CMAKE_INSTALL_LIBDIR}/cmake/SpatialMoE")
install(TARGETS smoe_ops EXPORT SpatialMoETargets LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}")
install(FILES integration/smoe_ops.h integration/modules.h DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/smoe")
install(EXPORT SpatialMoETargets NAMESPACE SpatialMoE:: DESTINATION "${_smoe_package_dir}")
configure_package_config_file(cmake/SpatialMoEConfig.cmake.in "${CMAKE_BINARY_DIR}/package/SpatialMoEConfig.cmake"
                              INSTALL_DESTINATION "${_smoe_package_dir}")
write_basic_package_version_file("${CMAKE_BINARY_DIR}/package/SpatialMoEConfigVersion.cmake"
                                 VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_BINARY_DIR}/package/SpatialMoEConfig.cmake"
              "${CMAKE_BINARY_DIR}/package/SpatialMoEConfigVersion.cmake"
              cmake/SmoeTorch.cmake
        DESTINATION "${_smoe_package_dir}")
