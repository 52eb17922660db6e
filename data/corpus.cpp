#include "data/corpus.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

bool is_jsonl(const std::string& path) { return fs::path(path).extension() == ".jsonl"; }

void read_whole_file(const std::string& path, std::string* out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(str("cannot read input '", path, "': ", std::strerror(errno)));
  struct stat sb;
  if (::fstat(::fileno(f), &sb) != 0) {
    std::fclose(f);
    throw Error(str("cannot read input '", path, "': ", std::strerror(errno)));
  }
  out->resize(static_cast<size_t>(sb.st_size));
  const size_t n = std::fread(out->data(), 1, out->size(), f);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) throw Error(str("error while reading input '", path, "'"));
  out->resize(n);  // the file shrank since fstat
}

// A file or folder, whatever path reaches it.
using FileId = std::pair<dev_t, ino_t>;

const char* kind_of(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "of an unknown kind";
}

// Walks the inputs depth first. The entries of a folder are taken in the order of their names,
// a folder's name with '/' appended: then the files come out in the sorted order of their full
// paths, and the first path to reach a file or folder is the one that comes first in that order.
class Lister {
 public:
  CorpusListing listing;

  void add(const std::string& path, bool named) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      const int err = errno;
      struct stat link;
      if (::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode))
        throw Error(str("'", path, "' is a broken symbolic link (to '", target_of(path), "': ",
                        std::strerror(err), "); remove it or restore what it points to"));
      if (named && err == ENOENT) throw Error(str("input '", path, "' does not exist"));
      throw Error(str("cannot read input '", path, "': ", std::strerror(err)));
    }
    const FileId id{st.st_dev, st.st_ino};
    const bool folder = S_ISDIR(st.st_mode);
    if (!folder && !S_ISREG(st.st_mode)) {
      if (named)
        throw Error(str("input '", path, "' is neither a regular file nor a directory (it is ",
                        kind_of(st.st_mode), ")"));
      skip(&listing.skipped.special, str("'", path, "' is neither a regular file nor a folder (it is ",
                                         kind_of(st.st_mode), ")"));
      return;
    }
    for (const auto& [open_id, open_path] : open_)
      if (open_id == id) {
        skip(&listing.skipped.cycles,
             str("'", path, "' leads back to '", open_path,
                 "', a folder that encloses it (following it would loop forever)"));
        return;
      }
    const auto [first, fresh] = reached_.emplace(id, path);
    if (!fresh) {
      skip(&listing.skipped.repeats, str("'", path, "' is the ", folder ? "folder" : "file",
                                         " already read as '", first->second, "'"));
      return;
    }
    if (!folder) {
      listing.files.push_back(path);
      return;
    }
    open_.emplace_back(id, path);
    for (const auto& [key, entry] : entries(path)) add(entry, false);
    open_.pop_back();
  }

 private:
  void skip(int64_t* count, const std::string& why) {
    ++*count;
    listing.warnings.push_back(why + "; skipped");
  }

  static std::string target_of(const std::string& link) {
    std::error_code ec;
    const fs::path target = fs::read_symlink(link, ec);
    return ec ? "?" : target.string();
  }

  // The entries of a folder but hidden ones, as (sort key, path), sorted.
  std::vector<std::pair<std::string, std::string>> entries(const std::string& dir) {
    std::vector<std::pair<std::string, std::string>> found;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::string name = p.filename().string();
      if (name[0] == '.') {
        ++listing.skipped.hidden;
        continue;
      }
      std::error_code type_ec;
      if (it->is_directory(type_ec)) name += '/';  // follows links
      found.emplace_back(std::move(name), p.string());
    }
    if (ec) throw Error(str("cannot list input folder '", dir, "': ", ec.message()));
    std::sort(found.begin(), found.end());
    return found;
  }

  std::map<FileId, std::string> reached_;            // -> the path it was first reached by
  std::vector<std::pair<FileId, std::string>> open_;  // the folders being listed, outermost first
};

}  // namespace

CorpusListing list_corpus(const std::vector<std::string>& inputs) {
  Lister lister;
  for (const std::string& in : inputs) lister.add(in, true);
  return std::move(lister.listing);
}

CorpusReader::CorpusReader(std::vector<std::string> files, std::string label_field)
    : files_(std::move(files)), label_field_(std::move(label_field)) {
  if (label_field_.empty()) return;
  for (const std::string& f : files_)
    if (!is_jsonl(f))
      throw Error(str("'", f, "' is a text file, but labels (field \"", label_field_,
                      "\") come only from JSONL inputs (*.jsonl)"));
}

CorpusReader::~CorpusReader() = default;

bool CorpusReader::next(CorpusDoc* doc) {
  for (;;) {
    if (jsonl_) {
      if (next_jsonl_line(doc)) return true;
      jsonl_.reset();
      ++file_;
      continue;
    }
    if (file_ >= files_.size()) return false;
    const std::string& path = files_[file_];
    if (is_jsonl(path)) {
      jsonl_ = std::make_unique<std::ifstream>();
      jsonl_buffer_.resize(1 << 20);
      jsonl_->rdbuf()->pubsetbuf(jsonl_buffer_.data(), std::streamsize(jsonl_buffer_.size()));
      jsonl_->open(path, std::ios::binary);
      if (!*jsonl_) throw Error(str("cannot read input '", path, "': ", std::strerror(errno)));
      line_ = 0;
      continue;
    }
    read_whole_file(path, &doc->text);
    bytes_read_ += int64_t(doc->text.size());
    ++file_;
    doc->where = path;
    doc->label_name.clear();
    doc->label_id = -1;
    if (!doc->text.empty()) return true;
    ++empty_docs_;
  }
}

bool CorpusReader::next_jsonl_line(CorpusDoc* doc) {
  const std::string& path = files_[file_];
  std::string line;
  while (std::getline(*jsonl_, line)) {
    ++line_;
    bytes_read_ += int64_t(line.size()) + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    doc->where = str(path, ":", line_);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(str(doc->where, ": not valid JSON (", e.what(), ")"));
    }
    const auto text = j.is_object() ? j.find("text") : j.end();
    if (!j.is_object() || text == j.end() || !text->is_string())
      throw Error(str(doc->where, ": expected a JSON object with a string field \"text\""));
    read_label(j, doc);
    doc->text = std::move(text->get_ref<std::string&>());
    if (!doc->text.empty()) return true;
    ++empty_docs_;
  }
  if (jsonl_->bad()) throw Error(str("error while reading input '", path, "'"));
  return false;
}

void CorpusReader::read_label(const nlohmann::json& object, CorpusDoc* doc) {
  doc->label_name.clear();
  doc->label_id = -1;
  if (label_field_.empty()) return;
  const auto it = object.find(label_field_);
  if (it == object.end())
    throw Error(str(doc->where, ": no label field \"", label_field_, "\""));
  LabelKind kind;
  if (it->is_string()) {
    kind = LabelKind::kString;
    doc->label_name = it->get<std::string>();
  } else if (it->is_number_unsigned() && it->get<uint64_t>() <= uint64_t(kMaxIntLabel)) {
    kind = LabelKind::kInt;
    doc->label_id = int64_t(it->get<uint64_t>());
  } else {
    throw Error(str(doc->where, ": label ", it->dump(), " (field \"", label_field_,
                    "\") is neither a string nor an integer in [0, ", kMaxIntLabel, "]"));
  }
  if (kind_ == LabelKind::kNone) {
    kind_ = kind;
    kind_where_ = doc->where;
  } else if (kind != kind_) {
    const auto name = [](LabelKind k) { return k == LabelKind::kString ? "a string" : "an integer"; };
    throw Error(str(doc->where, ": label ", it->dump(), " is ", name(kind), ", but the first label (",
                    kind_where_, ") is ", name(kind_), "; labels must be all strings or all integers"));
  }
}

}  // namespace longctx
