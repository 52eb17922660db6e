// GEMMs on the GPU through cuBLASLt (CUDA build only), in the row-major convention of
// core/gemm.h: C[M,N] = alpha · op(A) op(B) (+ C when accumulate). op(A) is [M,K] (A stored
// [K,M] when trans_a), op(B) is [K,N] (B stored [N,K] when trans_b). Inputs float (output
// float) or bf16 (output float or bf16); accumulation always fp32. bf16 inputs run on tensor
// cores; float inputs use plain fp32, not TF32, so that fp32 checks compare like with like.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

namespace longctx::cuda {

using bf16 = __nv_bfloat16;

class CublasLt {
 public:
  // Every GEMM runs on `stream`; the workspace (32 MiB) is allocated once here.
  explicit CublasLt(cudaStream_t stream);
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  // (Tin, Tout): (float, float), (bf16, float) or (bf16, bf16).
  template <class Tin, class Tout>
  void matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Tin* A,
              const Tin* B, Tout* C, bool accumulate = false, float alpha = 1.0f);
  // `batch` independent products; matrix i of A, B, C starts at i · stride_a, i · stride_b,
  // i · stride_c elements.
  template <class Tin, class Tout>
  void matmul_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Tin* A,
                      int64_t stride_a, const Tin* B, int64_t stride_b, Tout* C, int64_t stride_c,
                      int64_t batch, bool accumulate = false, float alpha = 1.0f);
  cudaStream_t stream() const { return stream_; }
  // The algorithm chosen for each distinct GEMM (shapes, strides, types, alignment): the
  // heuristic runs once per shape, not once per call.
  struct AlgoCache;

 private:
  std::unique_ptr<AlgoCache> cache_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cudaStream_t stream_;
};

// The bf16 GEMM rate of the current device (square n, fp32 accumulate, bf16 output) in
// TFLOP/s: the best of `repeats` timed runs after a warm-up.
double measure_gemm_tflops_bf16(int64_t n = 8192, int repeats = 10);

}  // namespace longctx::cuda
