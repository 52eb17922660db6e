// Files written so that nothing half-written is ever left under the final name.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace longctx {

// Writes `content` to `path` through a temporary name in the same directory, flushes it to
// disk and renames it into place. Throws Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& content);
// The same for content given as consecutive pieces (a header, then tensors' bytes), so that
// large files are written without first being copied into one string.
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts);

// fsync of a file, or of a directory (which makes a rename inside it durable). Error naming it.
void fsync_path(const std::string& path);
// fsync of the directory that holds `path` ("." for a bare name).
void fsync_parent_dir(const std::string& path);

// Creates a directory and its parents; Error naming it when that is impossible.
void make_dirs(const std::string& path);

std::string read_file(const std::string& path);

}  // namespace longctx
