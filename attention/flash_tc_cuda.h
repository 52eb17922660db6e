// Tensor-core FlashAttention for bf16 on sm_80+ (CUDA build only): mma.sync m16n8k16 with fp32
// accumulation, FlashAttention-2's work split, driven by a MaskPlan (attention/mask_plan.h), so
// full, causal and every block-sparse pattern (longformer, bigbird, strided, document masks)
// run the same kernels at a cost proportional to the blocks the plan lists. Layouts as
// attention/attention_cuda.h: q, out, dq, dout [B, H, Tq, D]; k, v, dk, dv [B, Hkv, Tk, D], query
// head h reading kv head h / (H / Hkv) without copies; lse [B, H, Tq] fp32, natural log.
// Any D ≤ 256 that is a multiple of 8 runs; 64 and 128 are the tuned sizes.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/attn_shape.h"
#include "attention/mask_plan.h"

namespace longctx::cuda {

// A MaskPlan on the GPU: its two flat arrays and the per-(mask, part) views pointing into them.
// Built once per mask set (a pattern's masks are fixed for a run; document masks change per
// batch and re-upload on the caller's stream).
class DeviceMaskPlan {
 public:
  DeviceMaskPlan() = default;
  DeviceMaskPlan(const DeviceMaskPlan&) = delete;
  DeviceMaskPlan& operator=(const DeviceMaskPlan&) = delete;
  ~DeviceMaskPlan();
  // Copies the plan to the device (growing the buffers when needed) on `stream`.
  void upload(const attn::MaskPlan& plan, cudaStream_t stream);
  const attn::PartView* views() const { return views_; }  // device [n_masks · n_parts]
  int64_t n_masks() const { return n_masks_; }
  int64_t n_parts() const { return n_parts_; }
  int64_t seq_q() const { return seq_q_; }
  int64_t seq_k() const { return seq_k_; }
  int64_t b_stride() const { return b_stride_; }
  int64_t h_stride() const { return h_stride_; }
  // The largest n_qb / n_kb of any part (the launches' grid sizes).
  int32_t max_qblocks() const { return max_qb_; }
  int32_t max_kblocks() const { return max_kb_; }

 private:
  int32_t* ints_ = nullptr;
  uint64_t* words_ = nullptr;
  attn::PartView* views_ = nullptr;
  int64_t ints_cap_ = 0, words_cap_ = 0, views_cap_ = 0;
  int64_t n_masks_ = 0, n_parts_ = 0, b_stride_ = 0, h_stride_ = 0, seq_q_ = 0, seq_k_ = 0;
  int32_t max_qb_ = 0, max_kb_ = 0;
};

// out = softmax(scale · q kᵀ over the plan's allowed scores) v, lse its logsumexp per row; a row
// with no allowed key gets out = 0 and lse = -inf. Parts run one after another, later parts
// merging into the rows through the logsumexp.
void flash_tc_forward(const attn::AttnShape& d, const DeviceMaskPlan& plan, const __nv_bfloat16* q,
                      const __nv_bfloat16* k, const __nv_bfloat16* v, __nv_bfloat16* out,
                      float* lse, float scale, cudaStream_t stream);

// dq, dk, dv overwritten. deterministic: dQ gets a pass of its own over query blocks and every
// gradient is the same bits on every run; otherwise dQ is accumulated in fp32 with atomics
// during the pass over key blocks (FlashAttention-2's split, one fewer recomputation of the
// scores). scratch: flash_tc_backward_scratch_floats(d, deterministic) floats.
void flash_tc_backward(const attn::AttnShape& d, const DeviceMaskPlan& plan, const __nv_bfloat16* q,
                       const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* out,
                       const float* lse, const __nv_bfloat16* dout, __nv_bfloat16* dq,
                       __nv_bfloat16* dk, __nv_bfloat16* dv, float scale, bool deterministic,
                       float* scratch, cudaStream_t stream);
int64_t flash_tc_backward_scratch_floats(const attn::AttnShape& d, bool deterministic);

}  // namespace longctx::cuda
