#include <algorithm>
#include <map>
#include <string>
#include <tuple>

#include "core/cuda_check.h"
#include "core/device_buffer.h"
#include "core/error.h"
#include "core/gemm_cuda.h"

namespace longctx::cuda {

namespace {

void lt_check(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  const char* name = cublasLtGetStatusString(st);
  throw Error(str("cuBLASLt: ", call_name(call), " failed: ", name ? name : "unknown status",
                  " (status ", int(st), ") [", file, ":", line, "]"));
}

#define LT_CHECK(call) lt_check((call), #call, __FILE__, __LINE__)

template <class T>
struct TypeOf;
template <>
struct TypeOf<float> {
  static constexpr cudaDataType_t id = CUDA_R_32F;
  static constexpr const char* name = "float";
};
template <>
struct TypeOf<bf16> {
  static constexpr cudaDataType_t id = CUDA_R_16BF;
  static constexpr const char* name = "bf16";
};

// Owners of cuBLASLt descriptors, so that a throw on the way frees them.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc() { LT_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F)); }
  ~MatmulDesc() { (void)cublasLtMatmulDescDestroy(d); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};

struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  // A column-major rows × cols matrix with leading dimension ld, `batch` of them `stride`
  // elements apart.
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
         int64_t stride) {
    LT_CHECK(cublasLtMatrixLayoutCreate(&d, type, uint64_t(rows), uint64_t(cols), ld));
    if (batch > 1) {
      const int32_t count = int32_t(batch);
      LT_CHECK(cublasLtMatrixLayoutSetAttribute(d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                sizeof(count)));
      LT_CHECK(cublasLtMatrixLayoutSetAttribute(d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof(stride)));
    }
  }
  ~Layout() { (void)cublasLtMatrixLayoutDestroy(d); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  Preference() { LT_CHECK(cublasLtMatmulPreferenceCreate(&d)); }
  ~Preference() { (void)cublasLtMatmulPreferenceDestroy(d); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  void set(cublasLtMatmulPreferenceAttributes_t attr, uint32_t v) {
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(d, attr, &v, sizeof(v)));
  }
  void set(cublasLtMatmulPreferenceAttributes_t attr, uint64_t v) {
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(d, attr, &v, sizeof(v)));
  }
};

// The largest power of two (≤ 256) dividing the address: the heuristic otherwise assumes 256-byte
// aligned operands and may pick a kernel that faults on an offset pointer (a head's slice).
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// One cuBLASLt call for the row-major product C[M,N] = alpha · op(A) op(B) + beta · C. Row-major
// C is column-major Cᵀ [N,M], and Cᵀ = op(B)ᵀ op(A)ᵀ, so cuBLASLt's first operand is our B and
// its second our A, each with the same transpose flag: row-major B [K,N] read column-major is
// the [N,K] matrix op(B)ᵀ (no transpose); stored [N,K] (trans_b) it reads as [K,N] and needs one.
struct Call {
  bool trans_a, trans_b;
  int64_t M, N, K, batch;
  const void* A;
  int64_t stride_a;
  const void* B;
  int64_t stride_b;
  void* C;
  int64_t stride_c;
  cudaDataType_t in_type, out_type;
  const char *in_name, *out_name;
  float alpha, beta;
};

// What makes two calls the same GEMM for the heuristic.
using AlgoKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int, int, uint32_t, uint32_t, uint32_t, float>;

}  // namespace

struct CublasLt::AlgoCache {
  std::map<AlgoKey, cublasLtMatmulAlgo_t> algos;
};

namespace {

void run_lt(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes, cudaStream_t stream,
            CublasLt::AlgoCache& cache, const Call& c) {
  MatmulDesc desc;
  const cublasOperation_t op_first = c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                          sizeof(op_first)));
  LT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                          sizeof(op_second)));
  // Stored (column-major) shapes: our B is [N,K] as stored unless trans_b ([K,N]); our A is
  // [K,M] unless trans_a ([M,K]); C is [N,M]. The leading dimension is the stored row count.
  const Layout first(c.in_type, c.trans_b ? c.K : c.N, c.trans_b ? c.N : c.K, c.trans_b ? c.K : c.N,
                     c.batch, c.stride_b);
  const Layout second(c.in_type, c.trans_a ? c.M : c.K, c.trans_a ? c.K : c.M,
                      c.trans_a ? c.M : c.K, c.batch, c.stride_a);
  const Layout out(c.out_type, c.N, c.M, c.N, c.batch, c.stride_c);

  const AlgoKey key{c.trans_a,
                    c.trans_b,
                    c.M,
                    c.N,
                    c.K,
                    c.batch,
                    c.stride_a,
                    c.stride_b,
                    c.stride_c,
                    int(c.in_type),
                    int(c.out_type),
                    alignment_of(c.A),
                    alignment_of(c.B),
                    alignment_of(c.C),
                    c.beta};
  if (const auto it = cache.algos.find(key); it != cache.algos.end()) {
    LT_CHECK(cublasLtMatmul(handle, desc.d, &c.alpha, c.B, first.d, c.A, second.d, &c.beta, c.C,
                            out.d, c.C, out.d, &it->second, workspace, workspace_bytes, stream));
    return;
  }
  Preference pref;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(workspace_bytes));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(c.B));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(c.A));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(c.C));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(c.C));

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, desc.d, first.d, second.d, out.d,
                                                           out.d, pref.d, 1, &result, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    const char* name = cublasLtGetStatusString(st);
    throw Error(
        str("cuBLASLt: no GEMM algorithm for M=", c.M, " N=", c.N, " K=", c.K, " batch=", c.batch,
            " trans_a=", c.trans_a, " trans_b=", c.trans_b, " inputs ", c.in_name, ", output ",
            c.out_name, " (fp32 accumulate) within a ", workspace_bytes >> 20,
            " MiB workspace (heuristic: ", name ? name : "unknown status", ", ", found, " found)"));
  }
  cache.algos.emplace(key, result.algo);
  LT_CHECK(cublasLtMatmul(handle, desc.d, &c.alpha, c.B, first.d, c.A, second.d, &c.beta, c.C,
                          out.d, c.C, out.d, &result.algo, workspace, workspace_bytes, stream));
}

}  // namespace

CublasLt::CublasLt(cudaStream_t stream) : cache_(std::make_unique<AlgoCache>()), stream_(stream) {
  LT_CHECK(cublasLtCreate(&handle_));
  workspace_bytes_ = size_t(32) << 20;
  const cudaError_t rc = cudaMalloc(&workspace_, workspace_bytes_);
  if (rc != cudaSuccess) {
    (void)cublasLtDestroy(handle_);
    LONGCTX_CUDA_CHECK("allocating the 32 MiB cuBLASLt workspace", rc);
  }
}

CublasLt::~CublasLt() {
  (void)cudaFree(workspace_);
  (void)cublasLtDestroy(handle_);
}

template <class Tin, class Tout>
void CublasLt::matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Tin* A,
                      const Tin* B, Tout* C, bool accumulate, float alpha) {
  matmul_batched<Tin, Tout>(trans_a, trans_b, M, N, K, A, 0, B, 0, C, 0, 1, accumulate, alpha);
}

template <class Tin, class Tout>
void CublasLt::matmul_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                              const Tin* A, int64_t stride_a, const Tin* B, int64_t stride_b,
                              Tout* C, int64_t stride_c, int64_t batch, bool accumulate,
                              float alpha) {
  LONGCTX_CHECK(M >= 0 && N >= 0 && K > 0 && batch >= 0 && batch <= INT32_MAX,
                "cuBLASLt matmul: bad sizes M=", M, " N=", N, " K=", K, " batch=", batch);
  if (M == 0 || N == 0 || batch == 0) return;
  Call c;
  c.trans_a = trans_a;
  c.trans_b = trans_b;
  c.M = M;
  c.N = N;
  c.K = K;
  c.batch = batch;
  c.A = A;
  c.stride_a = stride_a;
  c.B = B;
  c.stride_b = stride_b;
  c.C = C;
  c.stride_c = stride_c;
  c.in_type = TypeOf<Tin>::id;
  c.out_type = TypeOf<Tout>::id;
  c.in_name = TypeOf<Tin>::name;
  c.out_name = TypeOf<Tout>::name;
  c.alpha = alpha;
  c.beta = accumulate ? 1.0f : 0.0f;
  run_lt(handle_, workspace_, workspace_bytes_, stream_, *cache_, c);
}

#define LONGCTX_GEMM_INSTANTIATE(Tin, Tout)                                                    \
  template void CublasLt::matmul<Tin, Tout>(bool, bool, int64_t, int64_t, int64_t, const Tin*, \
                                            const Tin*, Tout*, bool, float);                   \
  template void CublasLt::matmul_batched<Tin, Tout>(bool, bool, int64_t, int64_t, int64_t,     \
                                                    const Tin*, int64_t, const Tin*, int64_t,  \
                                                    Tout*, int64_t, int64_t, bool, float);
LONGCTX_GEMM_INSTANTIATE(float, float)
LONGCTX_GEMM_INSTANTIATE(bf16, float)
LONGCTX_GEMM_INSTANTIATE(bf16, bf16)
#undef LONGCTX_GEMM_INSTANTIATE

namespace {

// Values in [-1, 1) from a hash of the index: nonzero data, so the timing is not that of a
// GEMM over zeros (which draws less power and can run faster).
__global__ void fill_pattern(bf16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    x[i] = __float2bfloat16(float(h & 0xFFFF) / 32768.0f - 1.0f);
  }
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { LONGCTX_CUDA_CHECK("GEMM benchmark stream", cudaStreamCreate(&s)); }
  ~Stream() { (void)cudaStreamDestroy(s); }
};

struct Event {
  cudaEvent_t e = nullptr;
  Event() { LONGCTX_CUDA_CHECK("GEMM benchmark event", cudaEventCreate(&e)); }
  ~Event() { (void)cudaEventDestroy(e); }
};

}  // namespace

double measure_gemm_tflops_bf16(int64_t n, int repeats) {
  LONGCTX_CHECK(n > 0 && repeats > 0, "measure_gemm_tflops_bf16: n ", n, ", repeats ", repeats);
  const Stream stream;
  DeviceBuffer<bf16> a(n * n), b(n * n), c(n * n);
  fill_pattern<<<1024, 256, 0, stream.s>>>(a.get(), n * n, 1u);
  LONGCTX_CUDA_LAUNCHED("fill_pattern");
  fill_pattern<<<1024, 256, 0, stream.s>>>(b.get(), n * n, 2u);
  LONGCTX_CUDA_LAUNCHED("fill_pattern");
  CublasLt blas(stream.s);
  blas.matmul<bf16, bf16>(false, false, n, n, n, a.get(), b.get(), c.get());  // warm-up
  const Event start, stop;
  float best_ms = 0;
  for (int r = 0; r < repeats; ++r) {
    LONGCTX_CUDA_CHECK("GEMM benchmark", cudaEventRecord(start.e, stream.s));
    blas.matmul<bf16, bf16>(false, false, n, n, n, a.get(), b.get(), c.get());
    LONGCTX_CUDA_CHECK("GEMM benchmark", cudaEventRecord(stop.e, stream.s));
    LONGCTX_CUDA_CHECK("GEMM benchmark", cudaEventSynchronize(stop.e));
    float ms = 0;
    LONGCTX_CUDA_CHECK("GEMM benchmark", cudaEventElapsedTime(&ms, start.e, stop.e));
    if (r == 0 || ms < best_ms) best_ms = ms;
  }
  return 2.0 * double(n) * double(n) * double(n) / (double(best_ms) * 1e-3) / 1e12;
}

}  // namespace longctx::cuda
