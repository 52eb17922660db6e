// A trained model for evaluation: the run's config and its parameters, from a checkpoint file
// or a live trainer, rebuilt as a Transformer of whatever batch and length a task needs.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/param_store.h"
#include "model/transformer.h"

namespace longctx {

struct CheckpointModel {
  Config cfg;                 // the run's merged config, as recorded in the checkpoint
  ParamStore<float> params;   // values only (gradients unallocated)
  int64_t step = 0;
  std::string path;
};

// Reads and checks a checkpoint (Error naming the file for anything wrong with it).
CheckpointModel load_checkpoint_model(const std::string& path);

// A Transformer of cfg's model for micro-batches [B, T], holding `params`' values. Error naming
// the parameter when a name or shape does not match the config's model.
std::unique_ptr<Transformer<float>> build_eval_model(const Config& cfg,
                                                     const ParamStore<float>& params, int64_t B,
                                                     int64_t T);

}  // namespace longctx
