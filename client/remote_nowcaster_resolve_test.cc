// ExpandReplicas with an injected resolver, and the system resolver on "localhost".
#include "client/remote_nowcaster_resolve.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "client/remote_nowcaster.h"

namespace nino::client {
namespace {

// A fake DNS: names -> addresses; counts lookups.
struct FakeDns {
  std::map<std::string, std::vector<std::string>> records;
  int lookups = 0;
  HostResolver resolver() {
    return [this](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
      ++lookups;
      auto it = records.find(host);
      if (it == records.end()) return absl::UnavailableError(absl::StrCat("no ", host));
      return it->second;
    };
  }
};

std::vector<std::string> Addresses(const std::vector<ReplicaAddress>& replicas) {
  std::vector<std::string> out;
  for (const auto& r : replicas) out.push_back(r.address);
  return out;
}

TEST(ExpandReplicasTest, NamesBecomeOneReplicaPerAddressLiteralsStay) {
  FakeDns dns;
  dns.records["nino-nowcaster-headless.nino.svc"] = {"10.0.0.7", "10.0.0.9", "fd00::3"};
  const auto replicas = ExpandReplicas(
      " 10.1.1.1:50051, nino-nowcaster-headless.nino.svc:50051,[::1]:7,,10.1.1.1:50051",
      dns.resolver());
  EXPECT_EQ(Addresses(replicas),
            (std::vector<std::string>{"10.1.1.1:50051", "10.0.0.7:50051", "10.0.0.9:50051",
                                      "[fd00::3]:50051", "[::1]:7"}));
  EXPECT_EQ(dns.lookups, 1);  // literals are never looked up
  EXPECT_EQ(replicas[0].host_name, "");
  EXPECT_EQ(replicas[1].host_name, "nino-nowcaster-headless.nino.svc");
  EXPECT_EQ(replicas[3].host_name, "nino-nowcaster-headless.nino.svc");
}

TEST(ExpandReplicasTest, UnresolvableOrPortlessEntriesAreKeptAsGiven) {
  FakeDns dns;
  const auto replicas = ExpandReplicas("gone.example:1,noport", dns.resolver());
  EXPECT_EQ(Addresses(replicas), (std::vector<std::string>{"gone.example:1", "noport"}));
  EXPECT_EQ(replicas[0].host_name, "");
}

TEST(ExpandReplicasTest, HasHostNames) {
  EXPECT_TRUE(HasHostNames("10.0.0.1:1,svc:50051"));
  EXPECT_TRUE(HasHostNames("localhost:1"));
  EXPECT_FALSE(HasHostNames("10.0.0.1:1, [::1]:2"));
  EXPECT_FALSE(HasHostNames(""));
}

TEST(ExpandReplicasTest, OrderIsRendezvousOverTheExpandedAddresses) {
  FakeDns dns;
  dns.records["svc"] = {"10.0.0.1", "10.0.0.2", "10.0.0.3"};
  const auto ordered = ReplicaOrder("job-7", ExpandReplicas("svc:50051", dns.resolver()));
  EXPECT_EQ(Addresses(ordered),
            ReplicaOrder("job-7", std::string("10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051")));
}

TEST(ResolveHostSystemTest, LocalhostIsLoopback) {
  auto ips = ResolveHostSystem("localhost");
  ASSERT_TRUE(ips.ok()) << ips.status();
  ASSERT_FALSE(ips->empty());
  for (const std::string& ip : *ips) EXPECT_TRUE(ip == "127.0.0.1" || ip == "::1") << ip;
  const auto replicas = ExpandReplicas("localhost:4242", ResolveHostSystem);
  ASSERT_EQ(replicas.size(), ips->size());
  EXPECT_EQ(replicas[0].host_name, "localhost");
  EXPECT_FALSE(ResolveHostSystem("no-such-host.invalid").ok());
}

}  // namespace
}  // namespace nino::client
