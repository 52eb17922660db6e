// manifest.json: reading with one message per problem (naming the file and the key), and
// writing atomically.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "data/dataset.h"

namespace longctx {

using nlohmann::json;

int64_t Manifest::tokens() const {
  int64_t n = 0;
  for (const ShardEntry& s : shards) n += s.tokens;
  return n;
}

int64_t Manifest::docs() const {
  int64_t n = 0;
  for (const ShardEntry& s : shards) n += s.docs;
  return n;
}

namespace {

// Typed access to the manifest's keys; `key` is the full path ("shards[2].tokens").
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(str("'", file_, "': key '", key, "' ", what));
  }

  const json& need(const json& obj, const std::string& name, const std::string& key) const {
    const auto it = obj.find(name);
    if (it == obj.end()) fail(key, "is missing");
    return *it;
  }

  int64_t integer(const json& obj, const std::string& name, const std::string& key, int64_t lo,
                  int64_t hi) const {
    const json& v = need(obj, name, key);
    if (!v.is_number_integer()) fail(key, str("should be an integer, not ", v.type_name()));
    // Large unsigned values would wrap in get<int64_t>; compare them unsigned first.
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi))
      fail(key, str("is ", v.dump(), ", expected at most ", hi));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(key, str("is ", x, ", expected ", lo, "..", hi));
    return x;
  }

  std::string string(const json& obj, const std::string& name, const std::string& key) const {
    const json& v = need(obj, name, key);
    if (!v.is_string()) fail(key, str("should be a string, not ", v.type_name()));
    return v.get<std::string>();
  }

  const json& object(const json& obj, const std::string& name, const std::string& key) const {
    const json& v = need(obj, name, key);
    if (!v.is_object()) fail(key, str("should be an object, not ", v.type_name()));
    return v;
  }

 private:
  std::string file_;
};

constexpr int64_t kMaxCount = int64_t(1) << 62;
constexpr int64_t kInt32Min = -(int64_t(1) << 31), kInt32Max = (int64_t(1) << 31) - 1;

}  // namespace

Manifest read_manifest(const std::string& dir) {
  const std::string file = (std::filesystem::path(dir) / kManifestName).string();
  if (!std::filesystem::exists(file))
    throw Error(str("'", dir, "' is not a tokenized dataset: it has no ", kManifestName));
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw Error(str("'", file, "' is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) throw Error(str("'", file, "' should hold a JSON object"));
  const Reader r(file);

  const std::string format = r.string(j, "format", "format");
  if (format != kManifestFormat)
    throw Error(str("'", file, "' is not a longctx dataset manifest (format '", format,
                    "', expected '", kManifestFormat, "')"));
  const int64_t version = r.integer(j, "version", "version", kInt32Min, kInt32Max);
  if (version != kManifestVersion)
    throw Error(str("'", file, "' is manifest version ", version, ", this build reads version ",
                    kManifestVersion));

  Manifest m;
  const json& tok = r.object(j, "tokenizer", "tokenizer");
  m.attrs.tokenizer = r.string(tok, "name", "tokenizer.name");
  m.attrs.tokenizer_hash = r.string(tok, "hash", "tokenizer.hash");
  m.tokenizer_model = r.string(tok, "model_file", "tokenizer.model_file");
  if (m.tokenizer_model.find('/') != std::string::npos)
    r.fail("tokenizer.model_file",
           str("is '", m.tokenizer_model, "', expected a file name inside the dataset"));
  m.attrs.vocab_size = r.integer(j, "vocab_size", "vocab_size", 1, int64_t(1) << 31);
  m.attrs.bos_id = int32_t(r.integer(j, "bos_id", "bos_id", kInt32Min, kInt32Max));
  m.attrs.eos_id = int32_t(r.integer(j, "eos_id", "eos_id", kInt32Min, kInt32Max));
  m.attrs.pad_id = int32_t(r.integer(j, "pad_id", "pad_id", kInt32Min, kInt32Max));

  const json& labels = r.need(j, "labels", "labels");
  if (!labels.is_null()) {
    if (!labels.is_array()) r.fail("labels", str("should be a list of names or null, not ",
                                                 labels.type_name()));
    m.has_labels = true;
    std::set<std::string> seen;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (!labels[i].is_string()) r.fail(str("labels[", i, "]"), "should be a string");
      m.labels.push_back(labels[i].get<std::string>());
      if (!seen.insert(m.labels.back()).second)
        r.fail(str("labels[", i, "]"), str("repeats '", m.labels.back(), "'"));
    }
  }

  const json& shards = r.need(j, "shards", "shards");
  if (!shards.is_array()) r.fail("shards", str("should be a list, not ", shards.type_name()));
  std::set<std::string> names;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string key = str("shards[", i, "]");
    if (!shards[i].is_object()) r.fail(key, "should be an object");
    ShardEntry e;
    e.name = r.string(shards[i], "name", key + ".name");
    if (e.name.empty() || e.name.find('/') != std::string::npos || e.name == "." || e.name == "..")
      r.fail(key + ".name", str("is '", e.name, "', expected a file name inside the dataset"));
    if (!names.insert(e.name).second) r.fail(key + ".name", str("repeats '", e.name, "'"));
    e.tokens = r.integer(shards[i], "tokens", key + ".tokens", 0, kMaxCount);
    e.docs = r.integer(shards[i], "docs", key + ".docs", 0, kMaxCount);
    e.checksum = r.string(shards[i], "checksum", key + ".checksum");
    m.shards.push_back(std::move(e));
  }
  const int64_t tokens = r.integer(j, "tokens", "tokens", 0, kMaxCount);
  const int64_t docs = r.integer(j, "docs", "docs", 0, kMaxCount);
  if (tokens != m.tokens())
    r.fail("tokens", str("is ", tokens, ", but the shards' tokens add up to ", m.tokens()));
  if (docs != m.docs())
    r.fail("docs", str("is ", docs, ", but the shards' docs add up to ", m.docs()));
  return m;
}

void write_manifest(const std::string& dir, const Manifest& m) {
  nlohmann::ordered_json j;  // keys in the documented order, for people reading the file
  j["format"] = kManifestFormat;
  j["version"] = kManifestVersion;
  j["tokenizer"] = {{"name", m.attrs.tokenizer},
                    {"hash", m.attrs.tokenizer_hash},
                    {"model_file", m.tokenizer_model}};
  j["vocab_size"] = m.attrs.vocab_size;
  j["bos_id"] = m.attrs.bos_id;
  j["eos_id"] = m.attrs.eos_id;
  j["pad_id"] = m.attrs.pad_id;
  j["tokens"] = m.tokens();
  j["docs"] = m.docs();
  j["labels"] = m.has_labels ? nlohmann::ordered_json(m.labels) : nullptr;
  j["shards"] = nlohmann::ordered_json::array();
  for (const ShardEntry& s : m.shards)
    j["shards"].push_back(
        {{"name", s.name}, {"tokens", s.tokens}, {"docs", s.docs}, {"checksum", s.checksum}});
  write_file_atomic((std::filesystem::path(dir) / kManifestName).string(), j.dump(2) + "\n");
}

}  // namespace longctx
