// RemoteNowcaster against a nowcaster with mutual TLS and bearer tokens (certificates made by
// openssl at test time), reached through "localhost:PORT" (DNS expansion), and the
// re-resolution of a name when its replicas fail.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/remote_nowcaster.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nowcaster/nowcaster_server.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_certs.h"
#include "tests/testing/test_jobs.h"
#include "tests/testing/test_util.h"

namespace nino::client {
namespace {

const testing::Layout& kFm16 = testing::Fm16Layout();
using testing::kFm16Params;
constexpr char kTrainerToken[] = "trainer-0123456789abcdef0123";

std::string Dir() { return ::testing::TempDir() + "/remote_nowcaster_security_test"; }

torch::Tensor States(int seed) { return testing::SmoothStates(kFm16Params, seed); }

class RemoteNowcasterSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::filesystem::create_directories(Dir());
    auto certs = testing::MakeTestCerts(Dir() + "/pki");
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new testing::TestCerts(*certs);
    ASSERT_TRUE(testing::WriteFile(Dir() + "/tokens", absl::StrCat(kTrainerToken, " trainer\n")));
    ASSERT_TRUE(testing::WriteFile(Dir() + "/trainer.token", kTrainerToken));
    ASSERT_TRUE(testing::WriteFile(Dir() + "/wrong.token", "wrong-0123456789abcdef0123\n"));
    auto model =
        testing::WriteSyntheticCheckpoint(Dir() + "/nino_mlp.pt", testing::SyntheticNiNo::kWnn, 3);
    ASSERT_TRUE(model.ok()) << model.status();
  }
  static void TearDownTestSuite() { delete certs_; }

  void SetUp() override {
    auto model = NiNoModel::Load(Dir() + "/nino_mlp.pt");
    ASSERT_TRUE(model.ok()) << model.status();
    auto table = MakeParamTable(kFm16);
    ASSERT_TRUE(table.ok()) << table.status();
    auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                        *table, GraphSpec{}, NowcastEngineOptions{});
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  static absl::StatusOr<std::unique_ptr<nowcaster::NowcasterServer>> StartServer(bool secure) {
    nowcaster::NowcasterOptions o =
        testing::LoopbackNowcasterOptions({{"nino_mlp", Dir() + "/nino_mlp.pt"}});
    if (secure) {
      o.tls_cert_file = certs_->server_cert;
      o.tls_key_file = certs_->server_key;
      o.tls_client_ca_file = certs_->ca_cert;
      o.auth_tokens_file = Dir() + "/tokens";
    }
    return testing::StartLoopbackNowcaster(std::move(o));
  }

  static RemoteNowcasterOptions ClientOptions(const std::string& address) {
    RemoteNowcasterOptions o;
    o.address = address;
    o.job_id = MakeJobId("fm16", 1);
    o.params = kFm16;
    o.nino_model = "nino_mlp";
    o.period = 20;
    o.ctx = 5;
    o.max_train_steps = 100;
    o.nowcast_timeout = absl::Seconds(20);
    o.rpc_timeout = absl::Seconds(10);
    return o;
  }
  static NowcasterCredentials Credentials(const std::string& token_file) {
    NowcasterCredentials c;
    c.tls_ca_file = certs_->ca_cert;
    c.tls_cert_file = certs_->client_cert;
    c.tls_key_file = certs_->client_key;
    c.auth_token_file = token_file;
    return c;
  }

  absl::StatusOr<torch::Tensor> Step(RemoteNowcaster& client, const torch::Tensor& states,
                                     int64_t nino_step, int k) {
    for (int64_t i = 0; i < 4; ++i) client.StateRecorded(nino_step - (4 - i) * 4, states[i]);
    client.SetNinoStep(nino_step);
    return client.Nowcast(states, k);
  }

  static testing::TestCerts* certs_;
  std::unique_ptr<NowcastEngine> engine_;
};
testing::TestCerts* RemoteNowcasterSecurityTest::certs_ = nullptr;

TEST_F(RemoteNowcasterSecurityTest, MutualTlsAndTokenThroughLocalhost) {
  auto server = StartServer(/*secure=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("localhost:", (*server)->port());
  const torch::Tensor states = States(1);
  auto expected = engine_->Nowcast(states, 7);
  ASSERT_TRUE(expected.ok()) << expected.status();

  RemoteNowcasterOptions o = ClientOptions(address);
  o.credentials = Credentials(Dir() + "/trainer.token");
  RemoteNowcaster client(o);
  auto got = Step(client, states, 19, 7);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LT((*got - *expected).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(client.stats().registrations, 1);
  // "localhost" expanded into its loopback addresses; the job is on one of them.
  EXPECT_TRUE(absl::StartsWith(client.replica(), "127.0.0.1:") ||
              absl::StartsWith(client.replica(), "[::1]:"))
      << client.replica();

  // Another principal's token: registration is refused, the NiNo step fails (no crash).
  RemoteNowcasterOptions wrong = ClientOptions(address);
  wrong.job_id = MakeJobId("fm16-wrong", 2);
  wrong.credentials = Credentials(Dir() + "/wrong.token");
  RemoteNowcaster refused(wrong);
  auto denied = Step(refused, states, 19, 7);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied) << denied.status();

  // No client certificate under mutual TLS, or no TLS at all: no connection.
  RemoteNowcasterOptions no_cert = ClientOptions(address);
  no_cert.job_id = MakeJobId("fm16-nocert", 3);
  no_cert.credentials = Credentials(Dir() + "/trainer.token");
  no_cert.credentials.tls_cert_file = no_cert.credentials.tls_key_file = "";
  no_cert.nowcast_timeout = no_cert.rpc_timeout = absl::Seconds(3);
  RemoteNowcaster uncertified(no_cert);
  EXPECT_FALSE(Step(uncertified, states, 19, 7).ok());
  RemoteNowcasterOptions plain = ClientOptions(address);
  plain.job_id = MakeJobId("fm16-plain", 4);
  plain.nowcast_timeout = plain.rpc_timeout = absl::Seconds(3);
  RemoteNowcaster plaintext(plain);
  EXPECT_FALSE(Step(plaintext, states, 19, 7).ok());
}

TEST_F(RemoteNowcasterSecurityTest, UnreadableCredentialsFailEveryCallClearly) {
  RemoteNowcasterOptions o = ClientOptions("127.0.0.1:1");
  o.credentials.auth_token_file = Dir() + "/missing.token";
  EXPECT_FALSE(ChannelSecurity::Load(o.credentials).ok());
  RemoteNowcaster client(o);
  auto r = Step(client, States(2), 19, 7);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "missing.token")) << r.status();
}

// A name whose replicas all fail is resolved again: the job moves to the new address.
TEST_F(RemoteNowcasterSecurityTest, ReResolvesANameWhenItsReplicasFail) {
  auto server = StartServer(/*secure=*/false);
  ASSERT_TRUE(server.ok()) << server.status();
  std::atomic<int> lookups{0};
  RemoteNowcasterOptions o = ClientOptions(absl::StrCat("nowcasters:", (*server)->port()));
  o.resolver = [&lookups](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    EXPECT_EQ(host, "nowcasters");
    // First a replica that is gone (nothing listens on 127.0.0.2), then the live one.
    return std::vector<std::string>{lookups++ == 0 ? "127.0.0.2" : "127.0.0.1"};
  };
  o.nowcast_timeout = absl::Seconds(10);
  RemoteNowcaster client(o);
  EXPECT_EQ(client.replica(), absl::StrCat("127.0.0.2:", (*server)->port()));
  const torch::Tensor states = States(3);
  // The first failure (a background upload's registration, or this NiNo step's) re-resolves;
  // this step or the next one is served by the live address.
  absl::StatusOr<torch::Tensor> got = Step(client, states, 19, 7);
  if (!got.ok()) got = Step(client, states, 39, 7);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GE(lookups.load(), 2);
  EXPECT_EQ(client.replica(), absl::StrCat("127.0.0.1:", (*server)->port()));
  auto expected = engine_->Nowcast(states, 7);
  ASSERT_TRUE(expected.ok());
  EXPECT_LT((*got - *expected).abs().max().item<double>(), 1e-6);
}

}  // namespace
}  // namespace nino::client
