// Parameters as named views into one flat buffer (llm.c's ParameterTensors): checkpoints,
// all-reduce buckets and optimizer shards are then slices of `values` / `grads`, not special
// cases. Each parameter has a stable name (e.g. "blocks.3.attn.wq"), shape and offset.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace longctx {

struct ParamInfo {
  std::string name;
  Shape shape;
  int64_t offset = 0;
  bool decay = true;  // AdamW weight decay applies (matrices; not norms, biases, embeddings)
};

template <class T>
class ParamStore {
 public:
  // Registers a parameter; returns its id. Must precede allocate().
  int add(const std::string& name, Shape shape, bool decay) {
    LONGCTX_CHECK(values.empty(), "ParamStore::add after allocate: ", name);
    LONGCTX_CHECK(!index_.count(name), "duplicate parameter name ", name);
    infos_.push_back({name, shape, size_, decay});
    size_ += shape.numel();
    index_[name] = static_cast<int>(infos_.size()) - 1;
    return static_cast<int>(infos_.size()) - 1;
  }
  // Zero-filled values and gradients, one contiguous buffer each.
  void allocate() {
    values.assign(size_, T(0));
    grads.assign(size_, T(0));
  }
  void zero_grads() { std::fill(grads.begin(), grads.end(), T(0)); }

  T* value(int id) { return values.data() + infos_[id].offset; }
  T* grad(int id) { return grads.data() + infos_[id].offset; }
  const T* value(int id) const { return values.data() + infos_[id].offset; }
  Tensor<T> tensor(int id) { return {value(id), infos_[id].shape, device}; }
  int find(const std::string& name) const {
    auto it = index_.find(name);
    LONGCTX_CHECK(it != index_.end(), "no parameter named '", name, "'");
    return it->second;
  }
  bool has(const std::string& name) const { return index_.count(name) > 0; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  int64_t size() const { return size_; }

  Device device = Device::cpu;
  std::vector<T> values, grads;

 private:
  std::vector<ParamInfo> infos_;
  std::unordered_map<std::string, int> index_;
  int64_t size_ = 0;
};

}  // namespace longctx
