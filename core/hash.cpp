#include "core/hash.h"

#include <xxhash.h>

#include <cstdio>
#include <vector>

#include "core/error.h"

namespace longctx {

struct Hasher::State {
  XXH3_state_t* st = nullptr;
};

Hasher::Hasher() : s_(new State) {
  s_->st = XXH3_createState();
  LONGCTX_CHECK(s_->st != nullptr, "XXH3_createState failed");
  XXH3_128bits_reset(s_->st);
}

Hasher::~Hasher() { XXH3_freeState(s_->st); }

void Hasher::update(const void* data, size_t n) { XXH3_128bits_update(s_->st, data, n); }

std::string Hasher::hex() const {
  const XXH128_hash_t h = XXH3_128bits_digest(s_->st);
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

std::string hash_bytes(std::string_view bytes) {
  Hasher h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

std::string hash_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(str("cannot read '", path, "'"));
  Hasher h;
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) throw Error(str("error while reading '", path, "'"));
  return h.hex();
}

}  // namespace longctx
