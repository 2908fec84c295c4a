// replica_order_dump: prints the replicas a C++ client tries for a job, in order, so that other
// clients (python/tests/replicas_test.py) can check that they place jobs alike.
//
// Reads JSON objects, one per line, from stdin:
//   {"job_id": "J", "addresses": "svc:50051,10.0.0.1:7", "hosts": {"svc": ["10.0.0.2", "::3"]}}
// "hosts" (optional) is a fake DNS: a name absent from it does not resolve. Without "hosts" the
// system resolver (getaddrinfo) is used. Writes one JSON object per input line:
//   {"replicas": [["10.0.0.2:50051", "svc"], ...], "order": ["10.0.0.2:50051", ...]}
// "replicas" is ReplicaOrder(job_id, ExpandReplicas(addresses, resolver)) as [address,
// host_name] pairs; "order" is the string overload ReplicaOrder(job_id, addresses) (no
// expansion). Bad input: a message on stderr and exit status 2.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/remote_nowcaster.h"
#include "client/remote_nowcaster_resolve.h"

namespace {

using nino::client::HostResolver;
using nlohmann::json;

// A resolver that answers from `hosts` ({name: [ip, ...]}) only.
HostResolver FakeDns(const json& hosts) {
  return [hosts](const std::string& name) -> absl::StatusOr<std::vector<std::string>> {
    auto it = hosts.find(name);
    if (it == hosts.end()) return absl::UnavailableError(absl::StrCat(name, " is not in hosts"));
    return it->get<std::vector<std::string>>();
  };
}

json Answer(const json& in) {
  const std::string job_id = in.at("job_id").get<std::string>();
  const std::string addresses = in.at("addresses").get<std::string>();
  const HostResolver resolve = in.contains("hosts") ? FakeDns(in.at("hosts"))
                                                    : HostResolver(nino::client::ResolveHostSystem);
  json replicas = json::array();
  for (const auto& r :
       nino::client::ReplicaOrder(job_id, nino::client::ExpandReplicas(addresses, resolve))) {
    replicas.push_back(json::array({r.address, r.host_name}));
  }
  return {{"replicas", replicas}, {"order", nino::client::ReplicaOrder(job_id, addresses)}};
}

}  // namespace

int main() {
  std::string line;
  for (int n = 1; std::getline(std::cin, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      std::cout << Answer(json::parse(line)).dump() << std::endl;
    } catch (const json::exception& e) {
      std::cerr << "replica_order_dump: line " << n << ": " << e.what()
                << " (expected {\"job_id\": str, \"addresses\": str, \"hosts\": {str: [str]}})"
                << std::endl;
      return 2;
    }
  }
  return 0;
}
