// One checkpoint file (HDF5), the layout of DESIGN.md "Checkpoints":
//   /params/<name>, /optim/m/<name>, /optim/v/<name>   fp32, the model's logical shapes
//   root attributes: format = "longctx-checkpoint", version, step, tokens_seen, config (the
//   merged YAML), loader (LoaderState JSON), rng (JSON)
// Every dataset carries an XXH3-128 checksum of its bytes, so a bit flip is found on read.
// Nothing is sharded on disk: a checkpoint resumes on any dp × sp grid.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/param_store.h"

namespace longctx {

inline constexpr const char* kCheckpointFormat = "longctx-checkpoint";
inline constexpr int kCheckpointVersion = 1;

struct CheckpointState {
  int64_t step = 0;         // optimizer steps taken
  int64_t tokens_seen = 0;  // training tokens consumed over all replicas
  std::string config_yaml;  // the run's merged config
  std::string loader_json;  // LoaderState::to_json()
  std::string rng_json = "{}";
  // Names, shapes and offsets of the tensors; values, m and v are flat buffers with those
  // offsets (ParamStore's layout), each of the store's size. m and v may be empty (no
  // optimizer state, e.g. an exported model).
  std::vector<ParamInfo> infos;
  std::vector<float> values, m, v;
  // Set by the readers: the file holds optimizer moments (read_checkpoint_header reads no
  // data, so m and v stay empty there). The writer goes by m and v alone.
  bool has_moments = false;
};

// Writes `path` atomically: a temporary name in the same directory, flushed to disk, then
// renamed over `path`. A crash at any point leaves either the old file or the new one.
// Infos may list their offsets in any order; the readers give them back in ParamStore's
// layout (consecutive, in the order of infos).
void write_checkpoint(const std::string& path, const CheckpointState& s);

// Reads and checks a checkpoint: Error naming the file and what is wrong for a file that is
// not one (format, version), is truncated or unreadable, lacks a tensor or attribute, or whose
// data fail their checksums.
CheckpointState read_checkpoint(const std::string& path);

// The attributes alone (infos with shapes, but no data read): for inspect and for choosing a
// checkpoint. Same errors as read_checkpoint except the checksums.
CheckpointState read_checkpoint_header(const std::string& path);

}  // namespace longctx
