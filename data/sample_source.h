// Where samples come from. Sample s (a global number running across epochs) depends only on
// the source's data, the seed and s: never on the rank, the grid or the order of requests.
//   synthetic: SyntheticData, epoch 0, index s.
//   pack:      the dataset's documents concatenated (each ends with EOS) and cut into windows of
//              seq_len + 1 tokens at stride seq_len (inputs are the first seq_len, targets the
//              last); epoch e = s / W visits the W windows in a fresh order (seed, e).
//   doc:       one document per sample, in a fresh order per epoch; truncated to seq_len or
//              padded with PAD; causal_lm predicts its next tokens, classify its label (in
//              targets[0]).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"

namespace longctx {

class Dataset;

struct SampleView {
  int32_t* inputs = nullptr;   // [seq_len]
  int32_t* targets = nullptr;  // [seq_len], kIgnoreIndex where nothing is predicted
  int32_t* doc = nullptr;      // [seq_len] document of each position (when has_documents())
};

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  // Samples in one epoch (a pass over the data); the synthetic source never repeats.
  virtual int64_t samples_per_epoch() const = 0;
  // Whether samples carry document ids (packed windows; doc samples: the document, then PAD).
  virtual bool has_documents() const = 0;
  virtual void read(int64_t s, const SampleView& out) const = 0;
};

// The source of cfg.data (hdf5: over `dataset`, which must outlive the source). Checks that the
// dataset fits the model (vocab, labels, length) with errors naming the keys and the dataset.
std::unique_ptr<SampleSource> make_sample_source(const Config& cfg, const Dataset* dataset);

}  // namespace longctx
