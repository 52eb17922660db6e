// The tensor-core flash entry points (attention/flash_tc_cuda.h): attention/flash_tc.cuh's
// orchestration with a launcher that runs its kernels on the caller's stream.
#include <cuda_runtime.h>

#include "attention/flash_tc.cuh"
#include "attention/flash_tc_cuda.h"
#include "core/cuda_check.h"

namespace longctx::cuda {

namespace {

struct CudaLaunch {
  cudaStream_t stream;

  template <class Args>
  void operator()(const char* name, void (*kernel)(Args), wo::Dim3 grid, size_t smem,
                  const Args& args) const {
    // Above the default 48 KB a kernel must opt in; the attribute is per kernel and device, and
    // setting it is a host-side call, cheap next to the launch.
    if (smem > 48 * 1024)
      LONGCTX_CUDA_CHECK(name, cudaFuncSetAttribute(
                                   kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    kernel<<<dim3(grid.x, grid.y, grid.z), tc::kThreads, smem, stream>>>(args);
    LONGCTX_CUDA_LAUNCHED(name);
  }
};

tc::PlanRef plan_of(const DeviceMaskPlan& p) {
  tc::PlanRef r;
  r.views = p.views();
  r.n_masks = p.n_masks();
  r.n_parts = p.n_parts();
  r.seq_q = p.seq_q();
  r.seq_k = p.seq_k();
  r.b_stride = p.b_stride();
  r.h_stride = p.h_stride();
  r.max_qb = p.max_qblocks();
  r.max_kb = p.max_kblocks();
  return r;
}

}  // namespace

void flash_tc_forward(const attn::AttnShape& d, const DeviceMaskPlan& plan, const __nv_bfloat16* q,
                      const __nv_bfloat16* k, const __nv_bfloat16* v, __nv_bfloat16* out,
                      float* lse, float scale, cudaStream_t stream) {
  tc::forward(CudaLaunch{stream}, d, plan_of(plan), q, k, v, out, lse, scale);
}

void flash_tc_backward(const attn::AttnShape& d, const DeviceMaskPlan& plan, const __nv_bfloat16* q,
                       const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* out,
                       const float* lse, const __nv_bfloat16* dout, __nv_bfloat16* dq,
                       __nv_bfloat16* dk, __nv_bfloat16* dv, float scale, bool deterministic,
                       float* scratch, cudaStream_t stream) {
  tc::backward(CudaLaunch{stream}, d, plan_of(plan), q, k, v, out, lse, dout, dq, dk, dv, scale,
               deterministic, scratch);
}

int64_t flash_tc_backward_scratch_floats(const attn::AttnShape& d, bool) {
  return tc::backward_scratch_floats(d);
}

}  // namespace longctx::cuda
