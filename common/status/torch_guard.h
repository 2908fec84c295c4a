// The one guard between LibTorch's exceptions and our absl::Status world. LibTorch reports
// errors by throwing c10::Error (TORCH_CHECK and friends); our code returns absl::Status and
// never lets an exception cross a thread, an RPC or a public API. Every call into LibTorch that
// can throw is wrapped here, so the code of the resulting Status is chosen in one place:
//
//   c10::OutOfMemoryError, std::bad_alloc  -> RESOURCE_EXHAUSTED
//   c10::NotImplementedError               -> UNIMPLEMENTED (no kernel for this dtype/device)
//   any other c10::Error or std::exception -> `fallback`: the caller's context decides, because
//                                             a TORCH_CHECK does not say whose fault it was:
//                                             DATA_LOSS while decoding a file, INVALID_ARGUMENT
//                                             for shapes the caller was given, UNAVAILABLE for
//                                             I/O or a collective, INTERNAL for our invariants
//   anything else (catch (...))            -> `fallback`, "unknown exception"
//
// The message is "<context>: <what>", with c10's backtrace left out.
//
//   absl::StatusOr<torch::Tensor> y = GuardTorch("NiNo forward", [&]() ->
//   absl::StatusOr<torch::Tensor> {
//     return model.Forward(x);
//   });
#ifndef NINO_COMMON_STATUS_TORCH_GUARD_H_
#define NINO_COMMON_STATUS_TORCH_GUARD_H_

#include <exception>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino {

// The Status for the exception in flight; call only inside a catch block. Never OK.
absl::Status StatusFromCurrentException(absl::string_view context,
                                        absl::StatusCode fallback = absl::StatusCode::kInternal);

// The Status for `e` (a c10::Error or any std::exception), as in the table above. Never OK.
absl::Status StatusFromException(const std::exception& e, absl::string_view context,
                                 absl::StatusCode fallback = absl::StatusCode::kInternal);

// Runs `fn` and returns its result; if it throws, the exception's Status instead. `fn` returns
// absl::Status or absl::StatusOr<T>. `fallback` must not be OK.
template <typename Fn>
auto GuardTorch(absl::string_view context, Fn&& fn,
                absl::StatusCode fallback = absl::StatusCode::kInternal)
    -> std::invoke_result_t<Fn&&> {
  using Result = std::invoke_result_t<Fn&&>;
  static_assert(std::is_convertible_v<absl::Status, Result>,
                "GuardTorch: fn must return absl::Status or absl::StatusOr<T>");
  try {
    return std::forward<Fn>(fn)();
  } catch (...) {
    return Result(StatusFromCurrentException(context, fallback));
  }
}

}  // namespace nino

#endif  // NINO_COMMON_STATUS_TORCH_GUARD_H_
