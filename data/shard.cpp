#include "data/shard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "data/hdf5_util.h"

namespace longctx {

namespace {

// Tokens go to disk in chunks of 1M ids (2 MiB as uint16); the index datasets in chunks of 64K
// entries. A shard smaller than one chunk gets a single chunk of exactly its size.
constexpr hsize_t kTokenChunk = hsize_t(1) << 20;
constexpr hsize_t kIndexChunk = hsize_t(1) << 16;

// One extendible 1-D dataset, filled through a buffer of one chunk: whole chunks are written as
// the buffer fills, so memory stays bounded whatever the shard's size. The dataset is created on
// the first flush, which lets a shard shorter than one chunk get a chunk of its own size.
class Column {
 public:
  Column(const char* name, hid_t file_type, hid_t mem_type, size_t elem, hsize_t chunk)
      : name_(name), file_type_(file_type), mem_type_(mem_type), elem_(elem), cap_(chunk) {}

  template <class T>
  void push(T v, hid_t file, const std::string& path) {
    if (buf_.empty()) buf_.resize(cap_ * elem_);  // allocated on use: most shards have no labels
    std::memcpy(buf_.data() + n_ * sizeof(T), &v, sizeof(T));
    if (++n_ == cap_) flush(file, path);
  }
  // Appends n values of type S converted to T, a chunk-sized run at a time.
  template <class T, class S>
  void push_range(const S* v, int64_t n, hid_t file, const std::string& path) {
    if (buf_.empty()) buf_.resize(cap_ * elem_);
    while (n > 0) {
      const int64_t take = std::min<int64_t>(n, int64_t(cap_ - n_));
      T* dst = reinterpret_cast<T*>(buf_.data()) + n_;
      for (int64_t i = 0; i < take; ++i) dst[i] = T(v[i]);
      v += take;
      n -= take;
      n_ += hsize_t(take);
      if (n_ == cap_) flush(file, path);
    }
  }
  hsize_t size() const { return written_ + n_; }

  void flush(hid_t file, const std::string& path) {
    auto lock = hdf5_lock();
    if (!dset_.valid()) create(file, path);
    if (n_ == 0) return;
    const hsize_t start = written_, count = n_, total = written_ + n_;
    H5Handle mem = h5_space(H5Screate_simple(1, &count, nullptr));
    bool ok = H5Dset_extent(dset_.get(), &total) >= 0;
    H5Handle space = h5_space(H5Dget_space(dset_.get()));
    ok = ok && space.valid() &&
         H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr) >= 0 &&
         H5Dwrite(dset_.get(), mem_type_, mem.get(), space.get(), H5P_DEFAULT, buf_.data()) >= 0;
    if (!ok)
      throw Error(str("cannot write /", name_, " to '", path, "': ", hdf5_error_text()));
    written_ = total;
    n_ = 0;
  }

  bool close() { return dset_.close(); }

 private:
  void create(hid_t file, const std::string& path) {
    const hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = std::max<hsize_t>(n_, 1);
    H5Handle space = h5_space(H5Screate_simple(1, &zero, &unlimited));
    H5Handle dcpl = h5_plist(H5Pcreate(H5P_DATASET_CREATE));
    // No compression: a window read must touch only its own bytes. Measured with 1M-id chunks:
    // shuffle + deflate(1) read 45M tokens/s in 1M-token pieces and 0.1M tokens/s in random
    // 4K-token windows (each inflates a whole chunk); uncompressed reads run at 500M+ tokens/s.
    // The loader needs 100M. Token ids shrank only to ~65% anyway.
    H5Pset_chunk(dcpl.get(), 1, &chunk);
    dset_ = h5_dataset(H5Dcreate2(file, name_, file_type_, space.get(), H5P_DEFAULT, dcpl.get(),
                                  H5P_DEFAULT));
    if (!dset_.valid())
      throw Error(str("cannot create /", name_, " in '", path, "': ", hdf5_error_text()));
  }

  const char* name_;
  hid_t file_type_, mem_type_;
  size_t elem_;
  hsize_t cap_, n_ = 0, written_ = 0;
  std::vector<unsigned char> buf_;
  H5Handle dset_;
};

}  // namespace

struct ShardWriter::Impl {
  std::string path, tmp;
  ShardAttrs attrs;
  bool with_labels = false, wide = false, created = false, finished = false;
  H5Handle file;
  Column tokens, offsets, labels;

  Impl(const std::string& p, const ShardAttrs& a, bool labeled)
      : path(p), tmp(p + ".tmp." + std::to_string(::getpid())), attrs(a), with_labels(labeled),
        wide(a.vocab_size > 65536),
        tokens("tokens", wide ? H5T_STD_U32LE : H5T_STD_U16LE,
               wide ? H5T_NATIVE_UINT32 : H5T_NATIVE_UINT16, wide ? 4 : 2, kTokenChunk),
        offsets("doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, 8, kIndexChunk),
        labels("labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 4, kIndexChunk) {}

  // A writer that never finished leaves nothing behind (this also runs when the constructor
  // fails after creating the file).
  ~Impl() {
    if (finished || !created) return;
    tokens.close();
    offsets.close();
    labels.close();
    file.close();
    ::unlink(tmp.c_str());
  }
};

ShardWriter::ShardWriter(const std::string& path, const ShardAttrs& attrs, bool with_labels) {
  // Valid ids must fit the int32 the readers hand out.
  if (attrs.vocab_size < 1 || attrs.vocab_size > (int64_t(1) << 31))
    throw Error(str("cannot write '", path, "': vocab_size ", attrs.vocab_size,
                    " is outside [1, 2^31]"));
  auto lock = hdf5_lock();  // Impl names HDF5 types, which are library calls too
  impl_ = std::make_unique<Impl>(path, attrs, with_labels);
  impl_->file = h5_file(H5Fcreate(impl_->tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  if (!impl_->file.valid())
    throw Error(str("cannot create '", impl_->tmp, "': ", hdf5_error_text()));
  impl_->created = true;
  const hid_t f = impl_->file.get();
  write_string_attr(f, "format", kShardFormat, impl_->tmp);
  write_int_attr(f, "version", kShardVersion, H5T_STD_I32LE, impl_->tmp);
  write_int_attr(f, "vocab_size", attrs.vocab_size, H5T_STD_I64LE, impl_->tmp);
  write_string_attr(f, "tokenizer", attrs.tokenizer, impl_->tmp);
  write_string_attr(f, "tokenizer_hash", attrs.tokenizer_hash, impl_->tmp);
  write_int_attr(f, "bos_id", attrs.bos_id, H5T_STD_I32LE, impl_->tmp);
  write_int_attr(f, "eos_id", attrs.eos_id, H5T_STD_I32LE, impl_->tmp);
  write_int_attr(f, "pad_id", attrs.pad_id, H5T_STD_I32LE, impl_->tmp);
  impl_->offsets.push<uint64_t>(0, f, impl_->tmp);
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::add_document(const uint32_t* ids, int64_t n, int32_t label) {
  Impl& m = *impl_;
  if (m.finished) throw Error(str("'", m.path, "' is already finished"));
  if (n < 0) throw Error(str("'", m.path, "': document of negative length ", n));
  // Check the whole document first, so that a refused one leaves the shard as it was.
  uint32_t top = 0;  // one vectorized pass; the offending id is searched only on failure
  for (int64_t i = 0; i < n; ++i) top = std::max(top, ids[i]);
  if (top >= uint64_t(m.attrs.vocab_size))
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] >= uint64_t(m.attrs.vocab_size))
        throw Error(str("token id ", ids[i], " (document ", docs(), ", position ", i,
                      ") is not below vocab_size ", m.attrs.vocab_size, " of '", m.path, "'"));
  if (m.with_labels && label < 0)
    throw Error(str("'", m.path, "': document ", docs(), " has label ", label,
                    ", expected a label id ≥ 0"));
  auto lock = hdf5_lock();
  const hid_t f = m.file.get();
  if (m.wide)
    m.tokens.push_range<uint32_t>(ids, n, f, m.tmp);
  else
    m.tokens.push_range<uint16_t>(ids, n, f, m.tmp);
  m.offsets.push<uint64_t>(m.tokens.size(), f, m.tmp);
  if (m.with_labels) m.labels.push<int32_t>(label, f, m.tmp);
}

int64_t ShardWriter::tokens() const { return int64_t(impl_->tokens.size()); }
int64_t ShardWriter::docs() const { return int64_t(impl_->offsets.size()) - 1; }

void ShardWriter::finish() {
  Impl& m = *impl_;
  if (m.finished) throw Error(str("'", m.path, "' is already finished"));
  {
    auto lock = hdf5_lock();
    const hid_t f = m.file.get();
    m.tokens.flush(f, m.tmp);
    m.offsets.flush(f, m.tmp);
    if (m.with_labels) m.labels.flush(f, m.tmp);
    const bool ok = m.tokens.close() & m.offsets.close() & m.labels.close() & m.file.close();
    if (!ok) throw Error(str("cannot close '", m.tmp, "': ", hdf5_error_text()));
  }
  fsync_path(m.tmp);
  if (std::rename(m.tmp.c_str(), m.path.c_str()) != 0)
    throw Error(str("cannot rename '", m.tmp, "' to '", m.path, "': ", std::strerror(errno)));
  m.finished = true;
}

// ---------------------------------------------------------------------------------------------

namespace {

struct Column1D {
  H5Handle dset, space;
  hsize_t size = 0;
};

// Opens /name and checks that it is a 1-D integer dataset of one of the given byte sizes and
// signedness; `what` describes the expectation in the error.
Column1D open_column(hid_t file, const char* name, bool is_signed, std::initializer_list<size_t> sizes,
                     const char* what, const std::string& path, size_t* elem = nullptr) {
  Column1D c;
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    throw Error(str("'", path, "' has no dataset /", name, " (expected ", what, ")"));
  c.dset = h5_dataset(H5Dopen2(file, name, H5P_DEFAULT));
  if (!c.dset.valid())
    throw Error(str("cannot open /", name, " in '", path, "': ", hdf5_error_text()));
  H5Handle type = h5_type(H5Dget_type(c.dset.get()));
  c.space = h5_space(H5Dget_space(c.dset.get()));
  const size_t bytes = H5Tget_size(type.get());
  const bool ok = H5Tget_class(type.get()) == H5T_INTEGER &&
                  (H5Tget_sign(type.get()) == H5T_SGN_2) == is_signed &&
                  std::find(sizes.begin(), sizes.end(), bytes) != sizes.end() &&
                  H5Sget_simple_extent_ndims(c.space.get()) == 1;
  if (!ok) throw Error(str("'", path, "': dataset /", name, " should be ", what));
  H5Sget_simple_extent_dims(c.space.get(), &c.size, nullptr);
  if (elem) *elem = bytes;
  return c;
}

void check_range(const Column1D& c, const char* name, int64_t first, int64_t n,
                 const std::string& path) {
  if (first < 0 || n < 0 || uint64_t(first + n) > c.size)
    throw Error(str("'", path, "': /", name, "[", first, ", ", first + n, ") is out of range (",
                    c.size, " entries)"));
}

void read_range(const Column1D& c, const char* name, int64_t first, int64_t n, hid_t mem_type,
                void* out, const std::string& path) {
  check_range(c, name, first, n, path);
  if (n == 0) return;
  auto lock = hdf5_lock();
  const hsize_t start = hsize_t(first), count = hsize_t(n);
  H5Handle mem = h5_space(H5Screate_simple(1, &count, nullptr));
  if (H5Sselect_hyperslab(c.space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr) < 0 ||
      H5Dread(c.dset.get(), mem_type, mem.get(), c.space.get(), H5P_DEFAULT, out) < 0)
    throw Error(str("cannot read /", name, "[", first, ", ", first + n, ") of '", path,
                    "': ", hdf5_error_text()));
}

}  // namespace

struct ShardReader::Impl {
  std::string path;
  ShardAttrs attrs;
  H5Handle file;
  Column1D tokens, offsets, labels;
  size_t token_bytes = 0;
  bool has_labels = false;
  std::vector<uint16_t> narrow;  // read buffer for uint16 tokens
};

ShardReader::ShardReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  if (::access(path.c_str(), R_OK) != 0)
    throw Error(str("cannot open '", path, "': ", std::strerror(errno)));
  auto lock = hdf5_lock();
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw Error(str("'", path, "' is not an HDF5 file"));
  }
  // No file lock: shards are immutable once renamed into place (writers never open the final
  // name), and locking fails on network filesystems that do not support it.
  H5Handle fapl = h5_plist(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_file_locking(fapl.get(), false, true);
  m.file = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!m.file.valid())
    throw Error(str("cannot open '", path, "' (damaged or truncated?): ", hdf5_error_text()));
  const hid_t f = m.file.get();

  std::string format;
  if (!read_string_attr(f, "format", path, &format))
    throw Error(str("'", path, "' is not a longctx token shard (no 'format' attribute)"));
  if (format != kShardFormat)
    throw Error(str("'", path, "' is not a longctx token shard (format '", format, "')"));
  int64_t version = 0;
  if (!read_int_attr(f, "version", path, &version))
    throw Error(str("'", path, "' has no 'version' attribute"));
  if (version != kShardVersion)
    throw Error(str("'", path, "' is a token shard of version ", version,
                    ", this build reads version ", kShardVersion));
  auto need_int = [&](const char* name) {
    int64_t v = 0;
    if (!read_int_attr(f, name, path, &v))
      throw Error(str("'", path, "' has no '", name, "' attribute"));
    return v;
  };
  auto need_string = [&](const char* name) {
    std::string v;
    if (!read_string_attr(f, name, path, &v))
      throw Error(str("'", path, "' has no '", name, "' attribute"));
    return v;
  };
  m.attrs.vocab_size = need_int("vocab_size");
  m.attrs.tokenizer = need_string("tokenizer");
  m.attrs.tokenizer_hash = need_string("tokenizer_hash");
  m.attrs.bos_id = int32_t(need_int("bos_id"));
  m.attrs.eos_id = int32_t(need_int("eos_id"));
  m.attrs.pad_id = int32_t(need_int("pad_id"));

  m.tokens = open_column(f, "tokens", false, {2, 4}, "1-D uint16 or uint32", path, &m.token_bytes);
  m.offsets = open_column(f, "doc_offsets", false, {8}, "1-D uint64", path);
  if (m.offsets.size == 0)
    throw Error(str("'", path, "': /doc_offsets is empty (expected documents + 1 entries)"));
  m.has_labels = H5Lexists(f, "labels", H5P_DEFAULT) > 0;
  if (m.has_labels) {
    m.labels = open_column(f, "labels", true, {4}, "1-D int32", path);
    if (m.labels.size != m.offsets.size - 1)
      throw Error(str("'", path, "': /labels has ", m.labels.size, " entries, /doc_offsets has ",
                      m.offsets.size, " (expected one label per document)"));
  }
  // The ends of the offsets tie them to the tokens; reading them also reaches the data blocks,
  // which a file cut short no longer holds.
  uint64_t ends[2];
  read_range(m.offsets, "doc_offsets", 0, 1, H5T_NATIVE_UINT64, &ends[0], path);
  read_range(m.offsets, "doc_offsets", int64_t(m.offsets.size) - 1, 1, H5T_NATIVE_UINT64,
             &ends[1], path);
  if (ends[0] != 0 || ends[1] != m.tokens.size)
    throw Error(str("'", path, "': /doc_offsets runs from ", ends[0], " to ", ends[1],
                    ", expected 0 to ", m.tokens.size, " (the token count)"));
}

ShardReader::~ShardReader() = default;

const std::string& ShardReader::path() const { return impl_->path; }
const ShardAttrs& ShardReader::attrs() const { return impl_->attrs; }
int64_t ShardReader::n_tokens() const { return int64_t(impl_->tokens.size); }
int64_t ShardReader::n_docs() const { return int64_t(impl_->offsets.size) - 1; }
bool ShardReader::has_labels() const { return impl_->has_labels; }
int ShardReader::token_bytes() const { return int(impl_->token_bytes); }

// The public reads take the lock before naming a memory type: H5T_NATIVE_* are library calls.
void ShardReader::read_tokens(int64_t begin, int64_t n, int32_t* out) const {
  auto lock = hdf5_lock();
  // HDF5's own uint16 -> int32 conversion costs ~75 us per 4K-token read (10x the read itself),
  // so the stored type is read and widened here. uint32 ids are read bit for bit: valid ones are
  // below vocab_size ≤ 2^31.
  Impl& m = *impl_;
  if (m.token_bytes == 2) {
    check_range(m.tokens, "tokens", begin, n, m.path);
    // In pieces of one chunk, so the buffer stays small whatever n is.
    for (int64_t done = 0; done < n;) {
      const int64_t k = std::min<int64_t>(n - done, int64_t(kTokenChunk));
      m.narrow.resize(size_t(k));
      read_range(m.tokens, "tokens", begin + done, k, H5T_NATIVE_UINT16, m.narrow.data(), m.path);
      for (int64_t i = 0; i < k; ++i) out[done + i] = m.narrow[size_t(i)];
      done += k;
    }
  } else {
    read_range(m.tokens, "tokens", begin, n, H5T_NATIVE_UINT32, out, m.path);
  }
}

void ShardReader::read_offsets(int64_t first, int64_t n, uint64_t* out) const {
  auto lock = hdf5_lock();
  read_range(impl_->offsets, "doc_offsets", first, n, H5T_NATIVE_UINT64, out, impl_->path);
}

void ShardReader::read_labels(int64_t first, int64_t n, int32_t* out) const {
  if (!impl_->has_labels) throw Error(str("'", impl_->path, "' has no labels"));
  auto lock = hdf5_lock();
  read_range(impl_->labels, "labels", first, n, H5T_NATIVE_INT32, out, impl_->path);
}

}  // namespace longctx
