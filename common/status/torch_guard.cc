#include "common/status/torch_guard.h"

#include <c10/util/Exception.h>

#include <new>
#include <string>

#include "absl/strings/str_cat.h"

namespace nino {
namespace {

absl::StatusCode CodeOf(const c10::Error& e, absl::StatusCode fallback) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return absl::StatusCode::kResourceExhausted;
  if (dynamic_cast<const c10::NotImplementedError*>(&e)) return absl::StatusCode::kUnimplemented;
  return fallback;
}

absl::StatusCode NotOk(absl::StatusCode code) {
  return code == absl::StatusCode::kOk ? absl::StatusCode::kInternal : code;
}

}  // namespace

absl::Status StatusFromException(const std::exception& e, absl::string_view context,
                                 absl::StatusCode fallback) {
  fallback = NotOk(fallback);
  const std::string prefix = context.empty() ? std::string() : absl::StrCat(context, ": ");
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    return absl::Status(CodeOf(*c10, fallback),
                        absl::StrCat(prefix, c10->what_without_backtrace()));
  }
  if (dynamic_cast<const std::bad_alloc*>(&e)) {
    return absl::ResourceExhaustedError(absl::StrCat(prefix, "out of memory (", e.what(), ")"));
  }
  return absl::Status(fallback, absl::StrCat(prefix, e.what()));
}

absl::Status StatusFromCurrentException(absl::string_view context, absl::StatusCode fallback) {
  try {
    throw;
  } catch (const std::exception& e) {
    return StatusFromException(e, context, fallback);
  } catch (...) {
    return absl::Status(NotOk(fallback),
                        absl::StrCat(context, context.empty() ? "" : ": ", "unknown exception"));
  }
}

}  // namespace nino
