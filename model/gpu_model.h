// The decoder LM on one GPU: the same layers, parameter layout and formulas as Transformer, in
// bf16 (or fp32, for checks) with fp32 master weights, fp32 gradients and fp32 AdamW moments on
// the device. Its flat buffers use the host ParamStore's offsets, so checkpoints, evaluation and
// the CPU model read the same numbers. Plain C++ (no CUDA headers): the trainer drives it in
// every build; a build without CUDA kernels throws from make_gpu_model.
#pragma once
#include <cstdint>
#include <memory>

#include "attention/attention_layer.h"
#include "core/comm.h"
#include "core/config.h"
#include "core/param_store.h"

namespace longctx {

class GpuModel {
 public:
  virtual ~GpuModel() = default;
  // Master weights and AdamW moments in the host store's layout (size() floats each).
  virtual void upload_params(const float* values) = 0;
  virtual void download_params(float* values) const = 0;
  virtual void upload_moments(const float* m, const float* v) = 0;
  virtual void download_moments(float* m, float* v) const = 0;
  virtual void download_grads(float* grads) const = 0;

  // The training step about to run (bigbird's per-step draws), then the coming micro-batches'
  // structure (documents, per-sample global tokens): as Transformer's set_step and set_batch,
  // kept until replaced. The attention masks follow them.
  virtual void set_step(int64_t step) = 0;
  virtual void set_batch(const BatchStructure& bs) = 0;

  virtual void zero_grads() = 0;
  // inputs, targets: host [B, T] token ids, checked as the CPU model does. Returns the sum of
  // losses; *count gets the number of targets counted.
  virtual double forward(const int32_t* inputs, const int32_t* targets, int64_t* count) = 0;
  // Accumulates parameter gradients of scale · Σ losses; follows forward() on the same inputs.
  virtual void backward(const int32_t* inputs, const int32_t* targets, float scale) = 0;
  // Sums the gradients over `comm` (NCCL on device buffers; null: this rank alone) and returns
  // the global gradient norm.
  virtual double reduce_gradients(Comm* comm) = 0;
  // Clips to train.clip given the norm, then one AdamW step (t counts from 1); refreshes the
  // bf16 compute copy.
  virtual void update(double grad_norm, double lr, int64_t t) = 0;

  virtual int64_t size() const = 0;              // parameters
  virtual int64_t activation_bytes() const = 0;  // activations and scratch on the device
  virtual int64_t device_bytes() const = 0;      // everything this model allocated on the GPU
  virtual double peak_device_mb() const = 0;     // the device's peak use seen so far (MiB)
};

// Throws Error unless CUDA device `device` can be used: a build with CUDA kernels, a driver, and
// that device present. The trainer asks before it builds anything large.
void check_gpu_device(int device);

// The GPU model for cfg (which check_device accepted) with the layout of `layout` (a host
// Transformer's store, same config), for micro-batches of B × T, on CUDA device `device`.
// Throws Error in a build without CUDA kernels or when the device does not exist.
std::unique_ptr<GpuModel> make_gpu_model(const Config& cfg, const ParamStore<float>& layout,
                                         int64_t B, int64_t T, int device);

}  // namespace longctx
