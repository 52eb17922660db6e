// Text generation with a Decoder: prefill the prompt, then sample one token at a time until
// max_new tokens or the EOS id. Greedy at temperature 0; otherwise softmax(logits / T) over
// the top_k most likely tokens (all when 0), drawn from a seeded RNG (core/rng.h), so a seed
// gives the same text every time.
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "eval/decoder.h"

namespace longctx {

struct SamplingOptions {
  int max_new = 32;          // tokens to generate at most
  double temperature = 0.0;  // 0: greedy (argmax)
  int top_k = 0;             // > 0: sample among the k most likely tokens only
  uint64_t seed = 0;
  int32_t eos_id = -1;       // stop after generating it; < 0: unknown (stop at max_new only)
};

struct Generation {
  std::vector<int32_t> ids;  // the new tokens (the EOS included when it ended the text)
  int64_t prompt_tokens = 0;
  bool stopped_at_eos = false;
  double prefill_s = 0, decode_s = 0;
  // prompt tokens / prefill_s, and new tokens / decode_s (each new token is sampled and fed
  // back through the model, so the cache ends holding prompt + new tokens).
  double prefill_tokens_per_s = 0, decode_tokens_per_s = 0;
};

// The next token from logits[V]. Ties in greedy decoding go to the lowest id.
int32_t sample_token(const float* logits, int64_t V, const SamplingOptions& opt, Rng& rng);

// Runs the prompt (non-empty) through a decoder at position 0, then generates. The decoder is
// reset first; afterwards its cache holds the prompt and the new tokens. Error when
// prompt + max_new exceeds the decoder's context length, naming both numbers.
Generation generate(Decoder& decoder, const std::vector<int32_t>& prompt,
                    const SamplingOptions& opt);

}  // namespace longctx
