// Internal helpers for the HDF5 C API: the process-wide lock, handles that close themselves,
// and HDF5's own error text turned into our messages.
//
// HDF5 is thread-safe only when built so (Debian's 1.10 serial package is, many builds are not),
// so every HDF5 call, closing included, happens under hdf5_lock(). The lock is recursive: a handle's destructor takes it too, so handles can be
// dropped both inside a locked scope and outside any (during unwinding, say).
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

namespace longctx {

// Takes the process-wide HDF5 lock. A thread's first call also turns off HDF5's printing of its
// error stack: failures become our Error messages instead. The process's first call, before
// any other HDF5 call, turns off HDF5's shutdown at exit (see hdf5_util.cpp).
std::unique_lock<std::recursive_mutex> hdf5_lock();

// The innermost message on HDF5's error stack ("" when empty), for appending to our errors.
std::string hdf5_error_text();

// An HDF5 identifier closed by the matching H5*close on destruction (under the lock).
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      close_ = o.close_;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns false when HDF5 reports a failure (e.g. a write it could not flush).
  bool close();
  void reset() { close(); }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

inline H5Handle h5_file(hid_t id) { return {id, H5Fclose}; }
inline H5Handle h5_dataset(hid_t id) { return {id, H5Dclose}; }
inline H5Handle h5_space(hid_t id) { return {id, H5Sclose}; }
inline H5Handle h5_type(hid_t id) { return {id, H5Tclose}; }
inline H5Handle h5_attr(hid_t id) { return {id, H5Aclose}; }
inline H5Handle h5_plist(hid_t id) { return {id, H5Pclose}; }

// Attributes on an object (the shard's root group). Readers return false when the attribute is
// absent and throw Error (naming `file` and the attribute) when it has the wrong kind of type.
void write_string_attr(hid_t obj, const char* name, const std::string& value,
                       const std::string& file);
void write_int_attr(hid_t obj, const char* name, int64_t value, hid_t file_type,
                    const std::string& file);
bool read_string_attr(hid_t obj, const char* name, const std::string& file, std::string* out);
bool read_int_attr(hid_t obj, const char* name, const std::string& file, int64_t* out);

}  // namespace longctx
