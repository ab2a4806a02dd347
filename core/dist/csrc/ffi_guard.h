// The error convention of the C entry points: a body that may throw runs inside `ffi_guard`,
// which returns 0 on success and 1 after writing the exception's message into the caller's
// buffer, so no C++ exception ever crosses into Rust. c10 errors give their message without the
// C++ backtrace (the message already names the rank and the operation).

#pragma once

#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <string>

namespace longrl::dist {

inline void write_error(const char* message, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, message, err_len - 1);
  err[err_len - 1] = '\0';
}

// `context` prefixes messages that do not come from a collective (which names itself).
template <class Body>
int ffi_guard(const std::string& context, char* err, size_t err_len, Body&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    write_error((context + e.what_without_backtrace()).c_str(), err, err_len);
  } catch (const std::exception& e) {
    write_error((context + e.what()).c_str(), err, err_len);
  } catch (...) {
    write_error((context + "unknown C++ exception").c_str(), err, err_len);
  }
  return 1;
}

}  // namespace longrl::dist
