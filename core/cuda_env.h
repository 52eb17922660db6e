// What a process can ask about CUDA without including CUDA's headers, so CPU-only builds and
// tests compile the same code.
#pragma once
#include <string>

namespace longctx {

// CUDA devices this process sees: 0 without a GPU or driver, and in a build without CUDA.
int cuda_device_count();
// The device's name ("NVIDIA H100 80GB HBM3"); empty without CUDA or for a device that does not
// exist.
std::string cuda_device_name(int device);
// Dense bf16 tensor-core peak of a GPU by its name, TFLOP/s (the vendor's figure without
// sparsity), or 0 when the name is not one this table knows.
double nominal_bf16_tflops(const std::string& name);

}  // namespace longctx
