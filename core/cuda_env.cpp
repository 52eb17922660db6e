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

namespace longctx {

std::string cuda_device_name(int device) {
#if LONGCTX_HAVE_CUDA
  cudaDeviceProp prop{};
  if (device < 0 || device >= cuda_device_count() ||
      cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return prop.name;
#else
  (void)device;
  return "";
#endif
}

double nominal_bf16_tflops(const std::string& name) {
  const auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989;
  if (has("H100") && has("PCIe")) return 756;
  if (has("H100") && has("NVL")) return 835;
  if (has("H100") || has("H800")) return 989;  // SXM
  if (has("A100") || has("A800")) return 312;
  return 0;
}

}  // namespace longctx
