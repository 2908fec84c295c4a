#include "nowcaster/exposure.h"

#include <arpa/inet.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nino::nowcaster {

absl::string_view HostOf(absl::string_view address) {
  const size_t colon = address.rfind(':');
  return colon == absl::string_view::npos ? address : address.substr(0, colon);
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::StatusOr<std::string> CheckExposure(const NowcasterOptions& options) {
  if (IsLoopbackHost(HostOf(options.address))) return std::string();
  std::vector<std::string> missing;
  if (options.tls_cert_file.empty()) missing.push_back("TLS (--tls_cert, --tls_key)");
  if (options.auth_tokens_file.empty()) missing.push_back("authentication (--auth_tokens_file)");
  if (missing.empty()) return std::string();
  const std::string what =
      absl::StrCat("--address=", options.address, " is reachable from other machines without ",
                   absl::StrJoin(missing, " and without "));
  if (options.allow_insecure) {
    return absl::StrCat("WARNING: ", what,
                        " (--allow_insecure: only where the network itself is trusted, e.g. a "
                        "service mesh that provides mutual TLS)");
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what,
      ": refusing to start. Give the missing flags, listen on 127.0.0.1, or pass "
      "--allow_insecure where the network provides this (e.g. a service mesh with mutual "
      "TLS)"));
}

}  // namespace nino::nowcaster
