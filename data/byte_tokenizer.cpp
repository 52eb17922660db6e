// The byte tokenizer: every byte is its own id, so any input round-trips exactly.
#include "core/error.h"
#include "data/tokenizer.h"

namespace longctx {
namespace {

constexpr int kBos = 256, kEos = 257, kPad = 258, kVocab = 259;

class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int vocab_size() const override { return kVocab; }
  int bos_id() const override { return kBos; }
  int eos_id() const override { return kEos; }
  int pad_id() const override { return kPad; }

  void encode(std::string_view text, std::vector<uint32_t>* out) const override {
    const size_t base = out->size();
    out->resize(base + text.size());
    // A plain widening loop over raw pointers, which the compiler vectorizes.
    const auto* src = reinterpret_cast<const unsigned char*>(text.data());
    uint32_t* dst = out->data() + base;
    for (size_t i = 0; i < text.size(); ++i) dst[i] = src[i];
  }

  std::string decode(const uint32_t* ids, size_t n) const override {
    std::string s;
    s.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t id = ids[i];
      if (id < 256) {
        s.push_back(static_cast<char>(id));
      } else if (id >= static_cast<uint32_t>(kVocab)) {
        throw Error(str("byte tokenizer: token id ", id, " at position ", i,
                        " is outside the vocabulary (expected < ", kVocab, ")"));
      }
    }
    return s;
  }

  std::string model_hash() const override { return "byte-v1"; }
  std::string model_bytes() const override { return ""; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace longctx
