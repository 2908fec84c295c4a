// The start-up rule for endpoints reachable from other machines: a nowcaster that listens on a
// non-loopback address needs TLS and bearer-token authentication, unless the operator says
// otherwise with --allow_insecure (e.g. a service mesh provides mutual TLS between pods).
#ifndef NINO_NOWCASTER_EXPOSURE_H_
#define NINO_NOWCASTER_EXPOSURE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nowcaster/options.h"

namespace nino::nowcaster {

// True for "localhost", 127.0.0.0/8 and ::1 (with or without brackets).
bool IsLoopbackHost(absl::string_view host);

// The host part of "host:port" ("[::1]:50051" -> "[::1]").
absl::string_view HostOf(absl::string_view address);

// OK with an empty string when options.address is loopback or has both TLS (tls_cert_file) and
// authentication (auth_tokens_file). Otherwise: with allow_insecure, OK with the warning to
// log; without, INVALID_ARGUMENT saying what is missing and how to proceed.
absl::StatusOr<std::string> CheckExposure(const NowcasterOptions& options);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_EXPOSURE_H_
