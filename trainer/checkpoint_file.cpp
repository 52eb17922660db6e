#include "trainer/checkpoint_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "data/hdf5_util.h"

namespace longctx {

namespace {

// Per dataset: XXH3-128 of its fp32 little-endian bytes, as 32 hex digits.
constexpr const char* kChecksumAttr = "xxh3_128";
// Root attribute: [{"name", "shape", "decay"}, ...] in ParamStore order. HDF5 lists a group's
// members by name, so the order (and the decay flags) must be stored to rebuild the layout.
constexpr const char* kParamsAttr = "params";
constexpr const char* kGroups[3] = {"/params", "/optim/m", "/optim/v"};

// Names become HDF5 link names: a '/' would make groups, "." and ".." are the path's own.
void check_infos(const CheckpointState& s, const std::string& path) {
  int64_t total = 0;
  std::set<std::string> seen;
  for (const ParamInfo& p : s.infos) {
    if (p.name.empty() || p.name == "." || p.name == ".." ||
        p.name.find('/') != std::string::npos)
      throw Error(str("cannot write checkpoint '", path, "': tensor name '", p.name,
                      "' cannot be an HDF5 dataset name"));
    if (!seen.insert(p.name).second)
      throw Error(str("cannot write checkpoint '", path, "': tensor '", p.name, "' twice"));
    for (int d = 0; d < p.shape.ndim; ++d)
      if (p.shape[d] < 0)
        throw Error(str("cannot write checkpoint '", path, "': tensor '", p.name, "' has shape ",
                        p.shape.str()));
    if (p.offset < 0 || p.offset + p.shape.numel() > int64_t(s.values.size()))
      throw Error(str("cannot write checkpoint '", path, "': tensor '", p.name, "' at offset ",
                      p.offset, " with ", p.shape.numel(), " values lies outside the ",
                      s.values.size(), " values given"));
    total += p.shape.numel();
  }
  if (total != int64_t(s.values.size()))
    throw Error(str("cannot write checkpoint '", path, "': the tensors hold ", total,
                    " values, the buffer ", s.values.size()));
  const bool moments = !s.m.empty() || !s.v.empty();
  if (moments && (s.m.size() != s.values.size() || s.v.size() != s.values.size()))
    throw Error(str("cannot write checkpoint '", path, "': m and v hold ", s.m.size(), " and ",
                    s.v.size(), " values, the parameters ", s.values.size()));
}

H5Handle make_group(hid_t parent, const char* name, const std::string& tmp) {
  H5Handle g(H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.valid()) throw Error(str("cannot create group ", name, " in '", tmp, "': ", hdf5_error_text()));
  return g;
}

H5Handle make_space(const Shape& shape) {
  if (shape.ndim == 0) return h5_space(H5Screate(H5S_SCALAR));
  hsize_t dims[4];
  for (int d = 0; d < shape.ndim; ++d) dims[d] = hsize_t(shape[d]);
  return h5_space(H5Screate_simple(shape.ndim, dims, nullptr));
}

// One contiguous, uncompressed dataset written in a single H5Dwrite; its checksum attribute
// is the hash of the same bytes.
void write_tensor(hid_t group, const char* group_name, const ParamInfo& p, const float* data,
                  hid_t dcpl, const std::string& tmp) {
  const std::string where = str(group_name, "/", p.name);
  H5Handle space = make_space(p.shape);
  H5Handle dset = h5_dataset(
      H5Dcreate2(group, p.name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl, H5P_DEFAULT));
  if (!dset.valid()) throw Error(str("cannot create ", where, " in '", tmp, "': ", hdf5_error_text()));
  const size_t bytes = size_t(p.shape.numel()) * sizeof(float);
  Hasher h;
  h.update(data, bytes);
  if (bytes > 0 &&
      H5Dwrite(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw Error(str("cannot write ", where, " to '", tmp, "': ", hdf5_error_text()));
  write_string_attr(dset.get(), kChecksumAttr, h.hex(), tmp);
  if (!dset.close()) throw Error(str("cannot close ", where, " in '", tmp, "': ", hdf5_error_text()));
}

void write_file(const std::string& tmp, const CheckpointState& s) {
  auto lock = hdf5_lock();
  // 1.8 object headers: attributes of any size (the config, the tensor list) and files that
  // any HDF5 of the last decade reads.
  H5Handle fapl = h5_plist(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18);
  H5Handle file = h5_file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  if (!file.valid()) throw Error(str("cannot create '", tmp, "': ", hdf5_error_text()));
  const hid_t f = file.get();

  nlohmann::json params = nlohmann::json::array();
  for (const ParamInfo& p : s.infos)
    params.push_back({{"name", p.name},
                      {"shape", std::vector<int64_t>(p.shape.dim.begin(),
                                                     p.shape.dim.begin() + p.shape.ndim)},
                      {"decay", p.decay}});
  write_string_attr(f, "format", kCheckpointFormat, tmp);
  write_int_attr(f, "version", kCheckpointVersion, H5T_STD_I32LE, tmp);
  write_int_attr(f, "step", s.step, H5T_STD_I64LE, tmp);
  write_int_attr(f, "tokens_seen", s.tokens_seen, H5T_STD_I64LE, tmp);
  write_string_attr(f, "config", s.config_yaml, tmp);
  write_string_attr(f, "loader", s.loader_json, tmp);
  write_string_attr(f, "rng", s.rng_json, tmp);
  write_string_attr(f, kParamsAttr, params.dump(), tmp);

  // Contiguous and never pre-filled: each tensor's bytes go to disk once, in one piece.
  H5Handle dcpl = h5_plist(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS);
  H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);
  H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_LATE);

  const bool moments = !s.m.empty();
  const std::vector<float>* buffers[3] = {&s.values, &s.m, &s.v};
  if (moments) make_group(f, "/optim", tmp);
  for (int g = 0; g < (moments ? 3 : 1); ++g) {
    H5Handle group = make_group(f, kGroups[g], tmp);
    for (const ParamInfo& p : s.infos)
      write_tensor(group.get(), kGroups[g], p, buffers[g]->data() + p.offset, dcpl.get(), tmp);
  }
  if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 || !file.close())
    throw Error(str("cannot flush '", tmp, "': ", hdf5_error_text()));
}

// --- reading -------------------------------------------------------------------------------

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(str("checkpoint '", path_, "': ", what));
  }

  CheckpointState read(bool with_data) {
    auto lock = hdf5_lock();
    open();
    CheckpointState s;
    const hid_t f = file_.get();
    std::string format;
    if (!read_string_attr(f, "format", path_, &format))
      fail("no attribute 'format' (not a longctx checkpoint)");
    if (format != kCheckpointFormat)
      fail(str("format is '", format, "', expected '", kCheckpointFormat,
               "' (not a longctx checkpoint)"));
    int64_t version = 0;
    if (!read_int_attr(f, "version", path_, &version)) fail("no attribute 'version'");
    if (version != kCheckpointVersion)
      fail(str("version ", version, " is not supported (this build reads version ",
               kCheckpointVersion, ")"));
    require_int("step", &s.step);
    require_int("tokens_seen", &s.tokens_seen);
    require_string("config", &s.config_yaml);
    require_string("loader", &s.loader_json);
    require_string("rng", &s.rng_json);
    std::string params;
    require_string(kParamsAttr, &params);
    s.infos = parse_infos(params);
    const int64_t total = s.infos.empty() ? 0 : s.infos.back().offset + s.infos.back().shape.numel();

    s.has_moments = H5Lexists(f, "/optim", H5P_DEFAULT) > 0;
    // Every dataset's shape is checked against the list before anything is allocated: a
    // damaged list then fails naming the tensor, not as an allocation of its claimed size.
    for (int g = 0; g < (s.has_moments ? 3 : 1); ++g) {
      H5Handle group = open_group(kGroups[g]);
      for (const ParamInfo& p : s.infos) read_tensor(group.get(), kGroups[g], p, nullptr);
    }
    if (!with_data) return s;
    s.values.assign(size_t(total), 0.0f);
    if (s.has_moments) {
      s.m.assign(size_t(total), 0.0f);
      s.v.assign(size_t(total), 0.0f);
    }
    std::vector<float>* buffers[3] = {&s.values, &s.m, &s.v};
    for (int g = 0; g < (s.has_moments ? 3 : 1); ++g) {
      H5Handle group = open_group(kGroups[g]);
      for (const ParamInfo& p : s.infos)
        read_tensor(group.get(), kGroups[g], p, buffers[g]->data() + p.offset);
    }
    return s;
  }

 private:
  void open() {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) fail(str("cannot open: ", std::strerror(errno)));
    if (S_ISDIR(st.st_mode)) fail("is a directory, not a checkpoint file");
    if (H5Fis_hdf5(path_.c_str()) <= 0) {
      hdf5_error_text();  // clear the stack
      fail("not an HDF5 file (not a checkpoint, or damaged)");
    }
    file_ = h5_file(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!file_.valid())
      fail(str("cannot open as HDF5 (the file is truncated or damaged): ", hdf5_error_text()));
  }

  void require_int(const char* name, int64_t* out) {
    if (!read_int_attr(file_.get(), name, path_, out)) fail(str("no attribute '", name, "'"));
  }
  void require_string(const char* name, std::string* out) {
    if (!read_string_attr(file_.get(), name, path_, out)) fail(str("no attribute '", name, "'"));
  }

  std::vector<ParamInfo> parse_infos(const std::string& text) const {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail(str("attribute '", kParamsAttr, "' is not JSON: ", e.what()));
    }
    if (!j.is_array()) fail(str("attribute '", kParamsAttr, "' is not a JSON array"));
    std::vector<ParamInfo> infos;
    std::set<std::string> seen;
    int64_t offset = 0;
    for (const auto& e : j) {
      const bool ok = e.is_object() && e.contains("name") && e["name"].is_string() &&
                      e.contains("shape") && e["shape"].is_array() && e["shape"].size() <= 4 &&
                      e.contains("decay") && e["decay"].is_boolean();
      if (!ok) fail(str("attribute '", kParamsAttr, "' has a malformed entry ", e.dump()));
      ParamInfo p;
      p.name = e["name"].get<std::string>();
      for (const auto& d : e["shape"]) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0)
          fail(str("attribute '", kParamsAttr, "' has a malformed entry ", e.dump()));
        p.shape.dim[p.shape.ndim++] = d.get<int64_t>();
      }
      p.decay = e["decay"].get<bool>();
      if (!seen.insert(p.name).second) fail(str("tensor '", p.name, "' is listed twice"));
      p.offset = offset;
      offset += p.shape.numel();
      infos.push_back(p);
    }
    return infos;
  }

  H5Handle open_group(const char* name) const {
    // H5Lexists checks one link at a time: /optim first, then /optim/m.
    if (std::strncmp(name, "/optim/", 7) == 0 && H5Lexists(file_.get(), "/optim", H5P_DEFAULT) <= 0)
      fail("has no group /optim");
    if (H5Lexists(file_.get(), name, H5P_DEFAULT) <= 0) fail(str("has no group ", name));
    H5Handle g(H5Gopen2(file_.get(), name, H5P_DEFAULT), H5Gclose);
    if (!g.valid()) fail(str("cannot open ", name, ": ", hdf5_error_text()));
    return g;
  }

  // Checks type and shape against the tensor list; with `out`, reads the data and checks it
  // against its checksum.
  void read_tensor(hid_t group, const char* group_name, const ParamInfo& p, float* out) const {
    const std::string where = str(group_name, "/", p.name);
    if (H5Lexists(group, p.name.c_str(), H5P_DEFAULT) <= 0) fail(str("has no dataset ", where));
    H5Handle dset = h5_dataset(H5Dopen2(group, p.name.c_str(), H5P_DEFAULT));
    if (!dset.valid()) fail(str("cannot open ", where, ": ", hdf5_error_text()));
    H5Handle type = h5_type(H5Dget_type(dset.get()));
    if (H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 4)
      fail(str(where, " is not fp32"));
    H5Handle space = h5_space(H5Dget_space(dset.get()));
    const int ndim = H5Sget_simple_extent_ndims(space.get());
    Shape shape;
    hsize_t dims[4];
    if (ndim >= 0 && ndim <= 4 && H5Sget_simple_extent_dims(space.get(), dims, nullptr) >= 0)
      for (int d = 0; d < ndim; ++d) shape.dim[shape.ndim++] = int64_t(dims[d]);
    if (ndim < 0 || ndim > 4 || !(shape == p.shape))
      fail(str(where, " has shape ", ndim < 0 || ndim > 4 ? "?" : shape.str(), ", the tensor list says ",
               p.shape.str()));
    std::string expected;
    if (!read_string_attr(dset.get(), kChecksumAttr, path_, &expected))
      fail(str(where, " has no checksum attribute '", kChecksumAttr, "'"));
    if (!out) return;
    const size_t bytes = size_t(p.shape.numel()) * sizeof(float);
    if (bytes > 0 &&
        H5Dread(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
      fail(str("cannot read ", where, " (the file is damaged): ", hdf5_error_text()));
    Hasher h;
    h.update(out, bytes);
    if (h.hex() != expected) fail(str(where, " fails its checksum (the file is damaged)"));
  }

  std::string path_;
  H5Handle file_;
};

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointState& s) {
  check_infos(s, path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write_file(tmp, s);
    fsync_path(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(str("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno)));
  } catch (const Error& e) {
    ::unlink(tmp.c_str());
    throw Error(str("cannot write checkpoint '", path, "': ", e.what()));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_parent_dir(path);
}

CheckpointState read_checkpoint(const std::string& path) { return Reader(path).read(true); }

CheckpointState read_checkpoint_header(const std::string& path) {
  return Reader(path).read(false);
}

}  // namespace longctx
