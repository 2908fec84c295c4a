// Status macros for functions that return absl::Status or absl::StatusOr<T>, in the style of
// Abseil's internal status_macros.h (and TensorFlow's TF_RETURN_IF_ERROR / TF_ASSIGN_OR_RETURN):
//
//   absl::Status Load(const std::string& path) {
//     NINO_RETURN_IF_ERROR(CheckPath(path));                 // returns the error as it is
//     NINO_ASSIGN_OR_RETURN(auto bytes, ReadAll(path));      // declares `bytes`
//     NINO_ASSIGN_OR_RETURN(header_, ParseHeader(bytes));    // assigns an existing lvalue
//     ...
//   }
//
// Contract: `expr` is evaluated exactly once. On error the status is returned unchanged (same
// code, same message): codes are chosen where an error arises, never remapped on the way up.
// The enclosing function must return absl::Status or any absl::StatusOr<U> (both convert from a
// non-OK absl::Status). NINO_ASSIGN_OR_RETURN moves the value out of the StatusOr; it expands
// to more than one statement, so it cannot be the body of an unbraced if/else.
#ifndef NINO_COMMON_STATUS_STATUS_MACROS_H_
#define NINO_COMMON_STATUS_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nino::status_internal {

// The status of an absl::Status or an absl::StatusOr<T>.
inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace nino::status_internal

#define NINO_STATUS_CONCAT_INNER_(a, b) a##b
#define NINO_STATUS_CONCAT_(a, b) NINO_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status or absl::StatusOr) is an error.
#define NINO_RETURN_IF_ERROR(expr)                                                         \
  do {                                                                                     \
    const auto& nino_status_or_ = (expr);                                                  \
    if (!nino_status_or_.ok()) return ::nino::status_internal::GetStatus(nino_status_or_); \
  } while (false)

// `lhs` = the value of `expr` (an absl::StatusOr<T>), or returns its error. `lhs` may declare a
// variable (`auto x`, `const Foo& f` is not allowed: the value is moved into `lhs`).
#define NINO_ASSIGN_OR_RETURN(lhs, expr) \
  NINO_ASSIGN_OR_RETURN_IMPL_(NINO_STATUS_CONCAT_(nino_status_or_, __LINE__), lhs, expr)

#define NINO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // NINO_COMMON_STATUS_STATUS_MACROS_H_
