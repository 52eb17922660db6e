#include "data/hdf5_util.h"

#include <vector>

#include "core/error.h"

namespace longctx {

std::unique_lock<std::recursive_mutex> hdf5_lock() {
  // No library shutdown at exit: HDF5 1.10 crashes there (H5F__close_cb) on a file whose close
  // failed, e.g. a checkpoint write that hit a full disk. Our handles close every file anyway.
  static const bool no_atexit = H5dont_atexit() >= 0;
  (void)no_atexit;
  static std::recursive_mutex mu;
  // Per thread: in a thread-safe HDF5 build the error settings are thread-local.
  thread_local bool silenced = false;
  std::unique_lock<std::recursive_mutex> lock(mu);
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
  return lock;
}

namespace {
herr_t innermost(unsigned n, const H5E_error2_t* e, void* data) {
  // Walking upward, entry 0 is where the error was detected: the most specific message.
  if (n == 0 && e->desc) *static_cast<std::string*>(data) = e->desc;
  return 0;
}
}  // namespace

std::string hdf5_error_text() {
  auto lock = hdf5_lock();
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &s);
  H5Eclear2(H5E_DEFAULT);
  return s;
}

bool H5Handle::close() {
  if (id_ < 0) return true;
  auto lock = hdf5_lock();
  const bool ok = close_(id_) >= 0;
  id_ = -1;
  return ok;
}

void write_string_attr(hid_t obj, const char* name, const std::string& value,
                       const std::string& file) {
  auto lock = hdf5_lock();
  // Fixed-length, NUL-terminated: the simplest string type for any reader.
  H5Handle type = h5_type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), value.size() + 1);
  H5Tset_strpad(type.get(), H5T_STR_NULLTERM);
  H5Handle space = h5_space(H5Screate(H5S_SCALAR));
  H5Handle attr = h5_attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), value.c_str()) < 0)
    throw Error(str("cannot write attribute '", name, "' to '", file, "': ", hdf5_error_text()));
}

void write_int_attr(hid_t obj, const char* name, int64_t value, hid_t file_type,
                    const std::string& file) {
  auto lock = hdf5_lock();
  H5Handle space = h5_space(H5Screate(H5S_SCALAR));
  H5Handle attr = h5_attr(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0)
    throw Error(str("cannot write attribute '", name, "' to '", file, "': ", hdf5_error_text()));
}

namespace {
// Opens a scalar attribute of the given type class; an invalid handle when it is absent.
H5Handle open_attr(hid_t obj, const char* name, H5T_class_t cls, const char* what,
                   const std::string& file, H5Handle* type) {
  if (H5Aexists(obj, name) <= 0) return {};
  H5Handle attr = h5_attr(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr.valid())
    throw Error(str("cannot read attribute '", name, "' of '", file, "': ", hdf5_error_text()));
  *type = h5_type(H5Aget_type(attr.get()));
  H5Handle space = h5_space(H5Aget_space(attr.get()));
  if (H5Tget_class(type->get()) != cls || H5Sget_simple_extent_npoints(space.get()) != 1)
    throw Error(str("attribute '", name, "' of '", file, "' should be one ", what));
  return attr;
}
}  // namespace

bool read_string_attr(hid_t obj, const char* name, const std::string& file, std::string* out) {
  auto lock = hdf5_lock();
  H5Handle type;
  H5Handle attr = open_attr(obj, name, H5T_STRING, "string", file, &type);
  if (!attr.valid()) return false;
  herr_t rc;
  if (H5Tis_variable_str(type.get()) > 0) {
    // Written by other tools (h5py's default): HDF5 allocates the string, we free it.
    H5Handle mem = h5_type(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* s = nullptr;
    rc = H5Aread(attr.get(), mem.get(), &s);
    if (rc >= 0 && s) *out = s;
    if (s) H5free_memory(s);
  } else {
    std::vector<char> buf(H5Tget_size(type.get()) + 1, '\0');
    rc = H5Aread(attr.get(), type.get(), buf.data());
    *out = std::string(buf.data());  // up to the first NUL, whatever the padding
  }
  if (rc < 0)
    throw Error(str("cannot read attribute '", name, "' of '", file, "': ", hdf5_error_text()));
  return true;
}

bool read_int_attr(hid_t obj, const char* name, const std::string& file, int64_t* out) {
  auto lock = hdf5_lock();
  H5Handle type;
  H5Handle attr = open_attr(obj, name, H5T_INTEGER, "integer", file, &type);
  if (!attr.valid()) return false;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, out) < 0)
    throw Error(str("cannot read attribute '", name, "' of '", file, "': ", hdf5_error_text()));
  return true;
}

}  // namespace longctx
