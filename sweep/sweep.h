// Ablation sweeps: a base config plus named variants (override sets), optionally crossed with a
// grid of values, expanded into runs that each train in a directory of their own.
//
//   base: ../quickstart.yaml          # relative to the sweep file, or absolute
//   out_dir: runs/ablation            # relative to the working directory (default runs/<stem>)
//   overrides: {train.steps: 300}     # applied to every run
//   variants:
//     flash: {attention.pattern: flash}
//     longformer: {attention.pattern: longformer, attention.window: 128}
//   grid: {data.seq_len: [1024, 4096]}  # optional: every variant at every grid point
//
// Run names (and directories under out_dir) are the variant's name, then, with a grid, one path
// component "KEY=VALUE[,KEY=VALUE...]" with the last part of each grid key (data.seq_len ->
// seq_len; the full key when two grid keys end alike) and the value with every character
// outside [A-Za-z0-9._+-] replaced by '_':  longformer/seq_len=1024.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace longctx {

// key=value strings in the form `longctx train --set` takes.
using Overrides = std::vector<std::string>;

struct SweepSpec {
  std::string path;     // the sweep file, as given
  std::string base;     // the base config: resolved against the sweep file's directory
  std::string out_dir;  // as written (relative to the working directory) or the default
  Overrides overrides;  // for every run
  std::vector<std::pair<std::string, Overrides>> variants;  // in file order
  // key -> values, each value already in --set form ("1024", "[0, 64]"), in file order.
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;
};

struct SweepRun {
  std::string name;     // "flash" or "flash/seq_len=1024"
  std::string variant;  // "flash"
  std::string dir;      // out_dir/name
  // The variant's overrides, then the grid point's: what tells this run from the others.
  Overrides distinct;
  // What the run trains with: the sweep's overrides, then `distinct`, then run.out_dir and
  // run.name.
  Overrides overrides;
};

// Reads and checks a sweep file. Throws ConfigError naming the file and the key for unknown
// top-level keys, a missing or unreadable base, an empty or malformed variants map, a variant
// or grid entry of the wrong shape, names that are not filesystem-safe.
SweepSpec load_sweep(const std::string& path);
// The same from text; `path` names the file in messages and anchors a relative base.
SweepSpec parse_sweep(const std::string& text, const std::string& path);

// Every variant at every grid point: variants in file order, grid points in the order of the
// grid's keys with the last key varying fastest. Throws ConfigError if two runs would share a
// directory.
std::vector<SweepRun> expand_sweep(const SweepSpec& spec);

// Each run's merged config, validated with load_config(spec.base, run.overrides) before any
// run starts. Throws ConfigError naming the sweep file, the variant, the grid point and the
// config error of every run that fails (one line each).
std::vector<Config> validate_sweep(const SweepSpec& spec, const std::vector<SweepRun>& runs);

}  // namespace longctx
