// Files written so that nothing half-written is ever left under the final name.
#pragma once
#include <string>

namespace longctx {

// Writes `content` to `path` through a temporary name in the same directory, flushes it to
// disk and renames it into place. Throws Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& content);

// Creates a directory and its parents; Error naming it when that is impossible.
void make_dirs(const std::string& path);

std::string read_file(const std::string& path);

}  // namespace longctx
