#include "client/remote_nowcaster_resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace nino::client {
namespace {

// "host:port" -> {host, port}; false without a port. "[v6]:port" keeps the brackets off.
bool SplitHostPort(absl::string_view entry, std::string* host, std::string* port) {
  const size_t colon = entry.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == entry.size()) return false;
  absl::string_view h = entry.substr(0, colon);
  if (absl::StartsWith(h, "[") && absl::EndsWith(h, "]")) h = h.substr(1, h.size() - 2);
  *host = std::string(h);
  *port = std::string(entry.substr(colon + 1));
  return !host->empty();
}

bool IsIpLiteral(const std::string& host) {
  in6_addr buf{};
  return inet_pton(AF_INET, host.c_str(), &buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &buf) == 1;
}

std::vector<std::string> Entries(absl::string_view addresses) {
  std::vector<std::string> out;
  for (absl::string_view a : absl::StrSplit(addresses, ',', absl::SkipWhitespace())) {
    out.emplace_back(absl::StripAsciiWhitespace(a));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveHostSystem(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::set<std::string> numeric;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[NI_MAXHOST];
    if (getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) ==
        0) {
      numeric.insert(text);
    }
  }
  freeaddrinfo(found);
  if (numeric.empty()) return absl::UnavailableError(absl::StrCat(host, " has no address"));
  return std::vector<std::string>(numeric.begin(), numeric.end());
}

bool HasHostNames(absl::string_view addresses) {
  for (const std::string& entry : Entries(addresses)) {
    std::string host, port;
    if (SplitHostPort(entry, &host, &port) && !IsIpLiteral(host)) return true;
  }
  return false;
}

std::vector<ReplicaAddress> ExpandReplicas(absl::string_view addresses,
                                           const HostResolver& resolve) {
  std::vector<ReplicaAddress> out;
  auto add = [&out](ReplicaAddress r) {
    if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(std::move(r));
  };
  for (const std::string& entry : Entries(addresses)) {
    std::string host, port;
    if (!SplitHostPort(entry, &host, &port) || IsIpLiteral(host)) {
      add({entry, ""});
      continue;
    }
    absl::StatusOr<std::vector<std::string>> ips = resolve(host);
    if (!ips.ok() || ips->empty()) {
      add({entry, ""});
      continue;
    }
    for (const std::string& ip : *ips) {
      const bool v6 = absl::StrContains(ip, ':');
      add({v6 ? absl::StrCat("[", ip, "]:", port) : absl::StrCat(ip, ":", port), host});
    }
  }
  return out;
}

}  // namespace nino::client
