// Content hashes (XXH3, 128 bit, as 32 hex digits) for dataset checksums and tokenizer model
// identity: fast enough to verify gigabytes, and a library's rather than our own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace longctx {

std::string hash_bytes(std::string_view bytes);
// Hash of a whole file's bytes; throws longctx::Error naming the file when it cannot be read.
std::string hash_file(const std::string& path);

// Incremental form: update() any number of times, then hex().
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(const void* data, size_t n);
  std::string hex() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace longctx
