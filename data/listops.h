// ListOps (Nangia & Bowman 2018, as generated for Long Range Arena, Tay et al. 2021): nested
// operators over the digits 0-9, e.g. "[MAX 2 9 [MIN 4 7 ] 0 ]"; the label is its value.
//   MAX, MIN; MED: the median, for an even count the mean of the two middle values truncated
//   (LRA's int(np.median(args))); SM: the sum modulo 10.
// The generator is LRA's: a node below max_depth is an operator with probability 1/4, else a
// digit; an operator takes 2 to max_args arguments (uniform), then "]". The root is always an
// operator (a lone digit is not an expression), so the shortest expression has 4 tokens. An
// expression is redrawn until its length lies in [min_len, max_len]: the samples follow LRA's
// distribution conditioned on that range.
//
// Token ids (a fixed vocabulary of kListOpsVocab):
//   0-9  the digits        10 [MAX   11 [MIN   12 [MED   13 [SM   14 ]   15 PAD
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

constexpr int kListOpsVocab = 16, kListOpsPad = 15, kListOpsClasses = 10;
constexpr int kListOpsMax = 10, kListOpsMin = 11, kListOpsMed = 12, kListOpsSum = 13,
              kListOpsEnd = 14;
constexpr int kListOpsShortest = 4;  // [OP d d ]

struct ListOpsConfig {
  int min_len = 500, max_len = 2000;  // tokens, both inclusive
  int max_depth = 10;                 // the root is depth 1; depth max_depth holds digits only
  int max_args = 10;
};

struct ListOpsSample {
  std::vector<int32_t> tokens;  // the expression, no padding
  int label = 0;                // its value, 0-9
};

// Sample `index` of the stream `seed`: depends on nothing else. Throws Error naming the range
// when no length in it is possible, or when none of many draws lands in it (a range the
// generator reaches too rarely).
ListOpsSample listops_sample(const ListOpsConfig& cfg, uint64_t seed, int64_t index);

// Throws Error naming the range unless expressions in it are common enough that every sample
// is found: checks a few thousand draws (cheap next to training on them).
void listops_check(const ListOpsConfig& cfg);

// "[MAX 2 9 [MIN 4 7 ] 0 ]": tokens separated by spaces, PAD as "<pad>". Throws Error for an id
// outside the vocabulary.
std::string listops_text(const std::vector<int32_t>& tokens);

}  // namespace longctx
