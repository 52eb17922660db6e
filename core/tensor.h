// A typed view over memory it does not own: data pointer, device, shape (row-major, contiguous).
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace longctx {

// Every tensor says where its memory lives, so a second backend can dispatch on it. Only the
// CPU backend exists in this build.
enum class Device : uint8_t { cpu, cuda };

inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

struct Shape {
  std::array<int64_t, 4> dim{0, 0, 0, 0};
  int ndim = 0;
  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    LONGCTX_CHECK(d.size() <= 4, "a tensor has at most 4 dimensions");
    for (int64_t x : d) dim[ndim++] = x;
  }
  int64_t operator[](int i) const { return dim[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= dim[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i)
      if (dim[i] != o.dim[i]) return false;
    return true;
  }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dim[i]);
    return s + "]";
  }
};

template <class T>
struct Tensor {
  T* data = nullptr;
  Shape shape;
  Device device = Device::cpu;
  int64_t numel() const { return shape.numel(); }
  T* begin() const { return data; }
  T* end() const { return data + numel(); }
};

}  // namespace longctx
