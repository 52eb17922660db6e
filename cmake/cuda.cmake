# The CUDA build (NcclComm, the kernels and the GPU model): on by default when the CUDA toolkit and NCCL
# are both found, so a GPU machine needs no flag; -DLONGCTX_CUDA=OFF forces a CPU-only build.
# Provides LONGCTX_CUDA, CUDA::cudart and longctx::nccl. NCCL is searched in the toolkit's
# directories, then $NCCL_HOME / $NCCL_ROOT, then the system's.
find_package(CUDAToolkit QUIET)
find_path(NCCL_INCLUDE_DIR nccl.h
  HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME ENV NCCL_ROOT PATH_SUFFIXES include)
find_library(NCCL_LIBRARY nccl
  HINTS ${CUDAToolkit_LIBRARY_DIR} ENV NCCL_HOME ENV NCCL_ROOT PATH_SUFFIXES lib lib64)

set(LONGCTX_NCCL_VERSION "")
if(NCCL_INCLUDE_DIR)
  foreach(part MAJOR MINOR PATCH)
    file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" line REGEX "^#define NCCL_${part} +[0-9]+")
    string(REGEX REPLACE "^#define NCCL_${part} +([0-9]+).*" "\\1" num "${line}")
    list(APPEND LONGCTX_NCCL_VERSION "${num}")
  endforeach()
  list(JOIN LONGCTX_NCCL_VERSION "." LONGCTX_NCCL_VERSION)
endif()

set(cuda_missing "")
if(NOT CUDAToolkit_FOUND)
  list(APPEND cuda_missing "the CUDA toolkit (set CUDAToolkit_ROOT)")
endif()
if(NOT NCCL_INCLUDE_DIR)
  list(APPEND cuda_missing "NCCL's header nccl.h (set NCCL_HOME)")
elseif(LONGCTX_NCCL_VERSION VERSION_LESS 2.18)
  # ncclCommSplit, which the process grid's groups need, arrived in 2.18.
  list(APPEND cuda_missing "NCCL >= 2.18 (found ${LONGCTX_NCCL_VERSION} in ${NCCL_INCLUDE_DIR})")
endif()
if(NOT NCCL_LIBRARY)
  list(APPEND cuda_missing "NCCL's library libnccl (set NCCL_HOME)")
endif()

if(cuda_missing)
  set(cuda_default OFF)
else()
  set(cuda_default ON)
endif()
option(LONGCTX_CUDA "Build the CUDA backend (NCCL communicator); on when CUDA and NCCL are found"
       ${cuda_default})
list(JOIN cuda_missing ", " cuda_missing_text)
if(LONGCTX_CUDA AND cuda_missing)
  message(FATAL_ERROR "LONGCTX_CUDA is ON but these are missing: ${cuda_missing_text}. "
                      "Configure with -DLONGCTX_CUDA=OFF for a CPU-only build.")
endif()

if(LONGCTX_CUDA)
  add_library(longctx::nccl UNKNOWN IMPORTED)
  set_target_properties(longctx::nccl PROPERTIES IMPORTED_LOCATION "${NCCL_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
  # CUDA kernels (.cu) need nvcc and a host compiler it accepts; the communicator needs neither,
  # so a toolkit without a working nvcc still builds.
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)  # H100/H200
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    # Kernels compile clean: every nvcc warning, and the host compiler's -Wall -Wextra, is an
    # error in .cu files.
    set(CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS} --Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror")
    set(cuda_nvcc "nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
  else()
    set(cuda_nvcc "no usable nvcc on PATH or in CMAKE_CUDA_COMPILER: .cu files cannot be built")
  endif()
  message(STATUS "longctx: CUDA build ON (CUDA ${CUDAToolkit_VERSION}, "
                 "NCCL ${LONGCTX_NCCL_VERSION}, ${cuda_nvcc})")
elseif(cuda_missing)
  message(STATUS "longctx: CUDA build OFF (missing: ${cuda_missing_text})")
else()
  message(STATUS "longctx: CUDA build OFF (LONGCTX_CUDA=OFF; NCCL ${LONGCTX_NCCL_VERSION} found)")
endif()
