#include "model/gpu_model.h"

#include "core/error.h"

#if !LONGCTX_HAVE_CUDA_KERNELS
namespace longctx {

void check_gpu_device(int) {
  throw Error(
      "'run.device: cuda': this longctx was built without CUDA kernels (configure with "
      "the CUDA toolkit and NCCL present, LONGCTX_CUDA=ON); use 'run.device: cpu'");
}

std::unique_ptr<GpuModel> make_gpu_model(const Config&, const ParamStore<float>&, int64_t, int64_t,
                                         int device) {
  check_gpu_device(device);
  return nullptr;
}

}  // namespace longctx
#endif
