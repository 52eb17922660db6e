#include "data/corpus.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

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

}  // namespace

std::vector<std::string> corpus_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    if (ec && st.type() != fs::file_type::not_found)
      throw Error(str("cannot read input '", in, "': ", ec.message()));
    if (!fs::exists(st)) throw Error(str("input '", in, "' does not exist"));
    if (fs::is_regular_file(st)) {
      files.push_back(in);
    } else if (fs::is_directory(st)) {
      std::vector<std::string> found;
      try {
        for (auto it = fs::recursive_directory_iterator(in); it != fs::recursive_directory_iterator();
             ++it) {
          if (is_hidden(it->path())) {
            if (it->is_directory()) it.disable_recursion_pending();
          } else if (it->is_regular_file()) {
            found.push_back(it->path().string());
          }
        }
      } catch (const fs::filesystem_error& e) {
        throw Error(str("cannot list input directory '", in, "': ", e.path1().string(), ": ",
                        e.code().message()));
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      throw Error(str("input '", in, "' is neither a regular file nor a directory"));
    }
  }
  return files;
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
