// The error convention of this crate's C entry points (the pattern of the policy plugin's shim):
// a body that may throw runs inside `ffi_guard`, which returns 0 on success and 1 after writing
// the exception's message into the caller's buffer, so no C++ exception ever crosses into Rust.
// Its own namespace: the policy's shim has a header of the same shape, and both can end up in
// one binary.

#pragma once

#include <c10/util/Exception.h>

#include <cstring>
#include <exception>

namespace longrl_optim {

inline void write_error(const char* message, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, message, err_len - 1);
  err[err_len - 1] = '\0';
}

// `unknown` names the failing call when the exception is not a `std::exception`.
template <class Body>
int ffi_guard(const char* unknown, char* err, size_t err_len, Body&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    // libtorch's message without its C++ stack trace (which says nothing to a user).
    write_error(e.what_without_backtrace(), err, err_len);
  } catch (const std::exception& e) {
    write_error(e.what(), err, err_len);
  } catch (...) {
    write_error(unknown, err, err_len);
  }
  return 1;
}

}  // namespace longrl_optim
