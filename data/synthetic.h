// Synthetic tasks generated on the fly, learnable in minutes, harder as the context grows.
// Sample `index` of `epoch` depends only on (seed, task, epoch, index): never on the rank,
// the grid or the order in which samples are asked for.
//
// The top four ids of the vocabulary are reserved markers; content symbols are the ids
// [0, alphabet).
//   copy:    a random segment, SEP, the same segment again. Only the copy is a target (the
//            first half is noise no model can predict), so a model that does not look back
//            cannot beat ln(alphabet) nats per target.
//   passkey: repetitive filler with "KEY d1..d5" planted at a random depth; the sequence ends
//            with "QUERY d1..d5". Every next token is a target except the planted digits.
//   random:  uniform tokens over the whole vocabulary (benchmarks).
//   majority: (classification) uniform symbols; the label is 1 when symbol 0 occurs more often
//            than symbol 1, else 0 (ties are broken by the last such symbol). The label sits in
//            targets[0], every other target is ignored.
//   listops: (classification) a ListOps expression (data/listops.h, its own ids 0-15) of
//            min_len to seq_len tokens (min_len: data.synthetic.min_len, auto = seq_len / 2),
//            then PAD to seq_len; the label (0-9) sits in targets[0]. The expression is
//            document 0 and the padding document 1, as in `packing: doc`: attention does not
//            see the padding and mean pooling leaves it out.
#pragma once
#include <cstdint>

#include "core/config.h"
#include "data/listops.h"

namespace longctx {

class SyntheticData {
 public:
  static constexpr int kKeyDigits = 5;

  SyntheticData(const SyntheticConfig& cfg, int vocab_size, int seq_len, uint64_t seed);
  // inputs[seq_len], targets[seq_len]: targets[t] is the token after inputs[t], or -1 (ignored);
  // for a labeled task targets[0] is the sample's class. doc[seq_len], when given, gets each
  // position's document (0; listops: 1 for the padding).
  void sample(int64_t epoch, int64_t index, int32_t* inputs, int32_t* targets,
              int32_t* doc = nullptr) const;
  // Whether samples end in padding, a document of its own (listops).
  bool has_documents() const { return cfg_.task == SyntheticTask::listops; }

  int32_t sep() const { return vocab_ - 1; }
  int32_t query() const { return vocab_ - 2; }
  int32_t key() const { return vocab_ - 3; }
  int32_t filler_mark() const { return vocab_ - 4; }

 private:
  SyntheticConfig cfg_;
  int vocab_, seq_len_;
  uint64_t seed_;
  ListOpsConfig listops_;
};

}  // namespace longctx
