// What a process can ask about CUDA without including CUDA's headers, so CPU-only builds and
// tests compile the same code.
#pragma once

namespace longctx {

// CUDA devices this process sees: 0 without a GPU or driver, and in a build without CUDA.
int cuda_device_count();

}  // namespace longctx
