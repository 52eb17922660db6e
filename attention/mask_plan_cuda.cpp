// A MaskPlan's copy on the GPU (DeviceMaskPlan, attention/flash_tc_cuda.h): its two flat arrays
// and the views pointing into them, in buffers that are reused while they are large enough.
#include <algorithm>
#include <vector>

#include "attention/flash_tc_cuda.h"
#include "core/cuda_check.h"

namespace longctx::cuda {

namespace {

constexpr const char* kUpload = "uploading a mask plan";

// Makes *p hold at least n elements. Kernels queued on `stream` may still read the old buffer,
// so it is freed once they are done. A quarter more than asked, so that document masks, whose
// size changes from batch to batch, soon stop reallocating.
template <class T>
void reserve(T** p, int64_t* cap, int64_t n, cudaStream_t stream, const char* what) {
  if (n <= *cap) return;
  LONGCTX_CUDA_CHECK(kUpload, cudaStreamSynchronize(stream));
  LONGCTX_CUDA_CHECK(kUpload, cudaFree(*p));
  *p = nullptr;
  *cap = 0;
  const int64_t want = n + n / 4;
  LONGCTX_CUDA_CHECK(str("allocating ", want * int64_t(sizeof(T)), " bytes for a mask plan's ",
                         what, " on the GPU"),
                     cudaMalloc(reinterpret_cast<void**>(p), size_t(want) * sizeof(T)));
  *cap = want;
}

template <class T>
void copy_to_device(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  if (n > 0)
    LONGCTX_CUDA_CHECK(
        kUpload, cudaMemcpyAsync(dst, src, size_t(n) * sizeof(T), cudaMemcpyHostToDevice, stream));
}

}  // namespace

DeviceMaskPlan::~DeviceMaskPlan() {
  // A destructor cannot report errors; cudaFree(nullptr) is a no-op.
  (void)cudaFree(ints_);
  (void)cudaFree(words_);
  (void)cudaFree(views_);
}

void DeviceMaskPlan::upload(const attn::MaskPlan& plan, cudaStream_t stream) {
  const int64_t n_ints = int64_t(plan.ints.size()), n_words = int64_t(plan.words.size());
  const int64_t n_views = int64_t(plan.offsets.size());
  reserve(&ints_, &ints_cap_, n_ints, stream, "block lists");
  reserve(&words_, &words_cap_, n_words, stream, "bitmasks");
  reserve(&views_, &views_cap_, n_views, stream, "part views");
  const std::vector<attn::PartView> views = plan.views(ints_, words_);
  copy_to_device(ints_, plan.ints.data(), n_ints, stream);
  copy_to_device(words_, plan.words.data(), n_words, stream);
  copy_to_device(views_, views.data(), n_views, stream);
  // The copies read host vectors: `views` dies on return and the caller may drop the plan.
  LONGCTX_CUDA_CHECK(kUpload, cudaStreamSynchronize(stream));
  n_masks_ = plan.n_masks;
  n_parts_ = plan.n_parts;
  b_stride_ = plan.b_stride;
  h_stride_ = plan.h_stride;
  seq_q_ = plan.seq_q;
  seq_k_ = plan.seq_k;
  max_qb_ = plan.max_qblocks();
  max_kb_ = plan.max_kblocks();
}

}  // namespace longctx::cuda
