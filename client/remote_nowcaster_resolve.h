// Expansion of a --nowcaster replica list: an entry that is a DNS name (e.g. a Kubernetes
// headless Service, one A/AAAA record per ready replica) becomes one replica per address it
// resolves to; IP literals stay as they are.
#ifndef NINO_CLIENT_REMOTE_NOWCASTER_RESOLVE_H_
#define NINO_CLIENT_REMOTE_NOWCASTER_RESOLVE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino::client {

// One replica to connect to.
struct ReplicaAddress {
  std::string address;    // "ip:port", "[ipv6]:port", or an entry kept as given
  std::string host_name;  // the DNS name it was resolved from ("" if given as is): the name a
                          // TLS server certificate is checked against

  bool operator==(const ReplicaAddress& o) const {
    return address == o.address && host_name == o.host_name;
  }
};

// Numeric addresses ("10.0.0.7", "::1") of a host name. Errors when it does not resolve.
using HostResolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>;

// getaddrinfo (TCP, IPv4 and IPv6), numeric forms, duplicates removed, in a fixed (sorted) order.
absl::StatusOr<std::vector<std::string>> ResolveHostSystem(const std::string& host);

// The comma-separated `addresses` (empty entries dropped, spaces trimmed) with every entry
// whose host is a name (not an IP literal) replaced by "address:port" for each address
// `resolve` gives (IPv6 in brackets). An entry that does not resolve, or has no ":port", is kept
// as given (gRPC resolves it itself and reports the error on use). Duplicates are dropped.
std::vector<ReplicaAddress> ExpandReplicas(absl::string_view addresses,
                                           const HostResolver& resolve);

// True when some entry of `addresses` has a DNS name as its host (expansion can change).
bool HasHostNames(absl::string_view addresses);

}  // namespace nino::client

#endif  // NINO_CLIENT_REMOTE_NOWCASTER_RESOLVE_H_
