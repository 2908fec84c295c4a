// ProbeHealth (the nino_health_probe binary's check) against an in-process NowcasterServer with
// mutual TLS (certificates made by openssl at test time, a synthetic NiNo model): the right
// credentials see SERVING, each missing or wrong one fails, readiness drains while liveness
// stays, and bad credential files are refused before anything is sent.
#include "nowcaster/health_probe.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/nino/nino_model.h"
#include "nowcaster/nowcaster_server.h"
#include "tests/testing/test_certs.h"

namespace nino::nowcaster {
namespace {

using nino::testing::MakeTestCerts;  // the test library (tests/testing)
using nino::testing::TestCerts;
using nino::testing::WriteTestFile;

std::string Dir() { return ::testing::TempDir() + "/health_probe_test"; }

class HealthProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto certs = MakeTestCerts(Dir() + "/pki");
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new TestCerts(*certs);
    NiNoConfig c;
    c.gnn = false;
    auto model = NiNoModel::Synthetic(c, 3);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE(model->Save(Dir() + "/nino_mlp.pt").ok());
    NowcasterOptions o;
    o.address = "127.0.0.1:0";
    o.models = {{"nino_mlp", Dir() + "/nino_mlp.pt"}};
    o.threads = 1;
    o.shutdown_deadline_ms = 1000;
    o.tls_cert_file = certs_->server_cert;
    o.tls_key_file = certs_->server_key;
    o.tls_client_ca_file = certs_->ca_cert;
    auto server = NowcasterServer::BuildAndStart(std::move(o));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete certs_;
  }

  // Mutual TLS with the right CA and the client certificate.
  static HealthProbeOptions Good(const std::string& service) {
    HealthProbeOptions o;
    o.address = absl::StrCat("127.0.0.1:", server_->port());
    o.service = service;
    o.timeout = absl::Seconds(5);
    o.tls_ca_file = certs_->ca_cert;
    o.tls_cert_file = certs_->client_cert;
    o.tls_key_file = certs_->client_key;
    return o;
  }

  static TestCerts* certs_;
  static NowcasterServer* server_;
};
TestCerts* HealthProbeTest::certs_ = nullptr;
NowcasterServer* HealthProbeTest::server_ = nullptr;

TEST_F(HealthProbeTest, MutualTlsSeesEveryServiceServing) {
  for (const std::string service : {"", kServiceName, kLivenessService}) {
    absl::StatusOr<ServingStatus> s = ProbeHealth(Good(service));
    ASSERT_TRUE(s.ok()) << service << ": " << s.status();
    EXPECT_EQ(*s, ServingStatus::kServing) << service;
  }
  HealthProbeOptions o = Good(kLivenessService);
  o.tls_server_name = "localhost";  // a name the certificate carries
  EXPECT_TRUE(ProbeHealth(o).ok());
  o = Good("no.such.Service");
  EXPECT_EQ(ProbeHealth(o).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(HealthProbeTest, EachMissingOrWrongCredentialFails) {
  HealthProbeOptions no_client_cert = Good(kLivenessService);
  no_client_cert.tls_cert_file.clear();
  no_client_cert.tls_key_file.clear();
  HealthProbeOptions other_ca = Good(kLivenessService);
  other_ca.tls_ca_file = certs_->other_ca_cert;
  HealthProbeOptions plaintext = Good(kLivenessService);
  plaintext.tls_ca_file.clear();
  plaintext.tls_cert_file.clear();
  plaintext.tls_key_file.clear();
  HealthProbeOptions wrong_name = Good(kLivenessService);
  wrong_name.tls_server_name = "nino-nowcaster.nino.svc";  // not in the certificate
  const std::vector<std::pair<std::string, HealthProbeOptions>> cases = {
      {"no client certificate", no_client_cert},
      {"another CA", other_ca},
      {"plaintext", plaintext},
      {"a name the certificate lacks", wrong_name}};
  for (const auto& [what, o] : cases) {
    absl::StatusOr<ServingStatus> s = ProbeHealth(o);
    ASSERT_FALSE(s.ok()) << what << " gave " << ServingStatusName(*s);
    EXPECT_TRUE(s.status().code() == absl::StatusCode::kUnavailable ||
                s.status().code() == absl::StatusCode::kDeadlineExceeded)
        << what << ": " << s.status();
  }
}

TEST_F(HealthProbeTest, BadCredentialFilesAreRefusedNamingTheFlag) {
  const std::string not_pem = Dir() + "/not_pem";
  ASSERT_TRUE(WriteTestFile(not_pem, "hello\n"));
  struct Case {
    std::string what, flag;
    HealthProbeOptions options;
  };
  std::vector<Case> cases;
  HealthProbeOptions o = Good("");
  o.tls_ca_file = Dir() + "/missing.crt";
  cases.push_back({"missing CA", "--tls_ca=" + o.tls_ca_file, o});
  o = Good("");
  o.tls_ca_file = not_pem;
  cases.push_back({"CA not PEM", "--tls_ca=" + not_pem, o});
  o = Good("");
  o.tls_key_file = certs_->client_cert;  // a certificate where the key belongs
  cases.push_back({"key not a key", "--tls_key", o});
  o = Good("");
  o.tls_key_file.clear();
  cases.push_back({"certificate without key", "--tls_key", o});
  o = Good("");
  o.tls_ca_file.clear();
  cases.push_back({"client certificate without CA", "--tls_ca", o});
  o = Good("");
  o.tls_ca_file.clear();
  o.tls_cert_file.clear();
  o.tls_key_file.clear();
  o.tls_server_name = "localhost";
  cases.push_back({"server name without CA", "--tls_ca", o});
  o = Good("");
  o.address.clear();
  cases.push_back({"no address", "--address", o});
  for (const Case& c : cases) {
    absl::StatusOr<ServingStatus> s = ProbeHealth(c.options);
    ASSERT_FALSE(s.ok()) << c.what;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument)
        << c.what << ": " << s.status();
    EXPECT_TRUE(absl::StrContains(s.status().message(), c.flag)) << c.what << ": " << s.status();
  }
}

// Last: the server stays NOT_SERVING for readiness afterwards.
TEST_F(HealthProbeTest, ZzReadinessDrainsWhileLivenessStays) {
  server_->SetNotServing();  // what SIGTERM does first, for --lame_duck_ms
  EXPECT_EQ(*ProbeHealth(Good(kLivenessService)), ServingStatus::kServing);
  EXPECT_EQ(*ProbeHealth(Good(kServiceName)), ServingStatus::kNotServing);
  EXPECT_EQ(*ProbeHealth(Good("")), ServingStatus::kNotServing);
  EXPECT_STREQ(ServingStatusName(ServingStatus::kNotServing), "NOT_SERVING");
}

}  // namespace
}  // namespace nino::nowcaster
