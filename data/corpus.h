// The documents of a text corpus, read one at a time so that a corpus of any size streams:
//   a text file is one document, its bytes as they are;
//   a *.jsonl file holds one document per line: a JSON object with a string field "text" and,
//     when a label field is named, a label that is a string or an integer ≥ 0 (blank lines are
//     skipped);
//   a directory stands for its regular files, recursively, in sorted path order; hidden files
//     and directories (names starting with '.') inside it are skipped.
// Symbolic links are followed, to files and to folders alike (as `find -L` does). What is
// skipped loses no text, and every skip is counted and, but for hidden names, told by name: a
// link back to an enclosing folder (it would loop forever), a file or folder reached a second
// time (through a link, or named twice: read once, where it comes first), and what is neither a
// file nor a folder (FIFOs, sockets, devices). A broken link is an error: its text is missing.
// Every error names the file (and line, for JSONL) and what was expected.
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace longctx {

// Integer labels are class ids; a larger one is surely not what was meant.
inline constexpr int64_t kMaxIntLabel = 1000000;

// What listing the inputs skipped, by kind.
struct CorpusSkips {
  int64_t hidden = 0;   // names starting with '.' inside a folder
  int64_t cycles = 0;   // links back to an enclosing folder
  int64_t repeats = 0;  // files and folders reached a second time
  int64_t special = 0;  // neither a regular file nor a folder
  int64_t total() const { return hidden + cycles + repeats + special; }
};

struct CorpusListing {
  std::vector<std::string> files;     // in reading order
  std::vector<std::string> warnings;  // one per skip but hidden ones, naming the path
  CorpusSkips skipped;
};

// The files the inputs stand for. Error naming an input that does not exist or is neither a
// regular file nor a directory, a broken link, or a folder or link that cannot be read.
CorpusListing list_corpus(const std::vector<std::string>& inputs);

enum class LabelKind { kNone, kString, kInt };

struct CorpusDoc {
  std::string text;
  std::string label_name;  // kString labels
  int64_t label_id = -1;   // kInt labels
  std::string where;       // "FILE" or "FILE:LINE", for messages
};

class CorpusReader {
 public:
  // `label_field`: the JSONL key of each document's label; "" reads no labels.
  CorpusReader(std::vector<std::string> files, std::string label_field);
  ~CorpusReader();

  // The next non-empty document into *doc; false after the last. Empty documents are skipped.
  bool next(CorpusDoc* doc);
  int64_t bytes_read() const { return bytes_read_; }
  int64_t empty_docs() const { return empty_docs_; }
  // Strings or integers, as the first label read was; later labels must be of the same kind.
  LabelKind label_kind() const { return kind_; }

 private:
  bool next_jsonl_line(CorpusDoc* doc);
  void read_label(const nlohmann::json& object, CorpusDoc* doc);

  std::vector<std::string> files_;
  std::string label_field_;
  size_t file_ = 0;
  std::unique_ptr<std::ifstream> jsonl_;  // the JSONL file being read, if any
  std::vector<char> jsonl_buffer_;
  int64_t line_ = 0;
  int64_t bytes_read_ = 0, empty_docs_ = 0;
  LabelKind kind_ = LabelKind::kNone;
  std::string kind_where_;  // where the first label was read
};

}  // namespace longctx
