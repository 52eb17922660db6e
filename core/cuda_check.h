// Checks for CUDA runtime calls (CUDA build only): a failure throws Error with the operation,
// the call, CUDA's message and file:line.
#pragma once
#include <cuda_runtime.h>

#include <cstring>
#include <string>

#include "core/error.h"

namespace longctx {

// `call` is the call's source text; its function name is kept.
inline std::string call_name(const char* call) {
  return std::string(call, std::strcspn(call, "("));
}

inline void cuda_check(cudaError_t rc, const std::string& op, const char* call, const char* file,
                       int line) {
  if (rc == cudaSuccess) return;
  throw Error(str(op, ": ", call_name(call), " failed: ", cudaGetErrorString(rc), " [", file, ":",
                  line, "]"));
}

}  // namespace longctx

#define LONGCTX_CUDA_CHECK(op, call) ::longctx::cuda_check((call), (op), #call, __FILE__, __LINE__)
// After a kernel launch: a bad launch configuration reports here, naming the kernel.
#define LONGCTX_CUDA_LAUNCHED(kernel) \
  ::longctx::cuda_check(cudaGetLastError(), (kernel), "kernel launch", __FILE__, __LINE__)
