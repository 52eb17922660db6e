#include "core/cuda_env.h"

#if LONGCTX_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace longctx {

int cuda_device_count() {
#if LONGCTX_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear it so later checks do not report it
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

}  // namespace longctx
