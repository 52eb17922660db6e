// Rebuilding the tokenizer a dataset was made with, refusing any other.
#include "core/error.h"
#include "data/tokenizer.h"

namespace longctx {

std::unique_ptr<Tokenizer> tokenizer_for_dataset(const std::string& name,
                                                 const std::string& model_bytes,
                                                 const std::string& expected_hash,
                                                 const std::string& origin) {
  std::unique_ptr<Tokenizer> tok;
  if (name == "byte") {
    tok = make_byte_tokenizer();
  } else if (name == "sentencepiece") {
    tok = sentencepiece_from_bytes(model_bytes, origin);
  } else {
    throw Error(str(origin, ": unknown tokenizer '", name, "' (expected byte or sentencepiece)"));
  }
  if (tok->model_hash() != expected_hash)
    throw Error(str("tokenizer model ", origin, " does not match its dataset: hash ",
                    tok->model_hash(), " (model) vs ", expected_hash, " (dataset)"));
  return tok;
}

}  // namespace longctx
