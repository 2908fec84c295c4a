// A NowcasterServer with TLS, mutual TLS and bearer tokens, in process on 127.0.0.1:0 with a
// synthetic NiNo model and certificates made by openssl at test time: who can connect, who may
// call what, /metrics behind a token, liveness vs readiness while draining, and the start-up
// rule for non-loopback addresses.
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/nino/nino_model.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/grpc_probe.h"
#include "nowcaster/nowcaster_server.h"
#include "proto/wire.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_certs.h"
#include "tests/testing/test_util.h"

namespace nino::nowcaster {
namespace {

constexpr char kAliceToken[] = "alice-0123456789abcdef0123";
constexpr char kBobToken[] = "bob-0123456789abcdef012345";
constexpr char kAdminToken[] = "ops-0123456789abcdef012345";
constexpr char kMetricsToken[] = "scrape-0123456789abcdef01";
const absl::Duration kTimeout = absl::Seconds(5);

using nino::testing::HttpGet;
using nino::testing::TestCerts;
using nino::testing::WriteFile;

std::string Dir() { return ::testing::TempDir() + "/secure_server_test"; }

v1::RegisterJobRequest SmallJob(const std::string& job_id) {
  v1::RegisterJobRequest r;
  r.set_job_id(job_id);
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"fc.0.weight", {8, 4}}, {"fc.0.bias", {8}}, {"fc.2.weight", {3, 8}}}) {
    v1::ParamInfo* p = r.add_params();
    p->set_name(name);
    for (int64_t d : shape) p->add_shape(d);
    p->set_dtype(v1::DTYPE_FLOAT32);
  }
  r.mutable_graph()->set_kind("generic");
  r.set_nino_model("nino_mlp");
  r.set_period(20);
  r.set_ctx(5);
  r.set_max_train_steps(100);
  return r;
}
constexpr int kSmallJobParams = 8 * 4 + 8 + 3 * 8;

class SecureServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto certs = nino::testing::MakeTestCerts(Dir() + "/pki");
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new TestCerts(*certs);
    ASSERT_TRUE(WriteFile(Dir() + "/tokens",
                          absl::StrCat("# principal tokens\n", kAliceToken, " alice\n", kBobToken,
                                       " bob\n", kAdminToken, " ops admin\n")));
    ASSERT_TRUE(WriteFile(Dir() + "/metrics_token", absl::StrCat(kMetricsToken, "\n")));
    auto model = nino::testing::WriteSyntheticCheckpoint(Dir() + "/nino_mlp.pt",
                                                         nino::testing::SyntheticNiNo::kWnn, 3);
    ASSERT_TRUE(model.ok()) << model.status();
  }
  static void TearDownTestSuite() { delete certs_; }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  static NowcasterOptions Options() {
    NowcasterOptions o =
        nino::testing::LoopbackNowcasterOptions({{"nino_mlp", Dir() + "/nino_mlp.pt"}});
    o.register_wait_ms = 20000;
    return o;
  }
  // BuildAndStart itself: one test listens on 0.0.0.0 on purpose (the exposure rule).
  void Start(NowcasterOptions o) {
    auto server = NowcasterServer::BuildAndStart(std::move(o));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  std::string Target() const { return absl::StrCat("127.0.0.1:", server_->port()); }
  std::shared_ptr<grpc::Channel> Channel(std::shared_ptr<grpc::ChannelCredentials> creds) const {
    return grpc::CreateChannel(Target(), std::move(creds));
  }
  static std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& ca,
                                                       bool client_cert = false) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Read(ca);
    if (client_cert) {
      o.pem_cert_chain = Read(certs_->client_cert);
      o.pem_private_key = Read(certs_->client_key);
    }
    return grpc::SslCredentials(o);
  }
  static std::string Read(const std::string& path) { return nino::testing::ReadFile(path); }
  // True when a health check over `channel` succeeds.
  static bool Connects(const std::shared_ptr<grpc::Channel>& channel) {
    return CheckHealth(channel, "", kTimeout).ok();
  }

  static TestCerts* certs_;
  std::unique_ptr<NowcasterServer> server_;
};
TestCerts* SecureServerTest::certs_ = nullptr;

// One call with the given bearer token ("" = none) in the metadata.
class Caller {
 public:
  Caller(std::shared_ptr<grpc::Channel> channel, std::string token)
      : stub_(v1::Nowcaster::NewStub(std::move(channel))), token_(std::move(token)) {}
  grpc::StatusCode Register(const std::string& job, std::string* job_token) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::RegisterJobResponse r;
    const grpc::Status s = stub_->RegisterJob(&ctx, SmallJob(job), &r);
    EXPECT_TRUE(s.ok() || s.error_code() == grpc::UNAUTHENTICATED ||
                s.error_code() == grpc::PERMISSION_DENIED)
        << s.error_message();
    *job_token = r.job_token();
    return s.error_code();
  }
  grpc::StatusCode GetJob(const std::string& job, const std::string& job_token) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::JobStatus r;
    return stub_->GetJob(&ctx, Ref(job, job_token), &r).error_code();
  }
  grpc::StatusCode Close(const std::string& job, const std::string& job_token) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::CloseJobResponse r;
    return stub_->CloseJob(&ctx, Ref(job, job_token), &r).error_code();
  }
  grpc::StatusCode Predict(const std::string& job, const std::string& job_token) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::PredictRequest req;
    req.set_job_id(job);
    req.set_job_token(job_token);
    req.set_step(19);
    auto reader = stub_->Predict(&ctx, req);
    v1::PredictionChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish().error_code();
  }
  grpc::StatusCode PutState(const std::string& job, const std::string& job_token) {
    std::vector<float> values(kSmallJobParams, 0.5f);
    auto chunks = wire::SplitState(job, job_token, 3, values, 1 << 20);
    EXPECT_TRUE(chunks.ok());
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::PutStateResponse r;
    auto writer = stub_->PutState(&ctx, &r);
    for (const auto& c : *chunks) writer->Write(c);
    writer->WritesDone();
    return writer->Finish().error_code();
  }
  grpc::StatusCode List(int* jobs) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::ListJobsResponse r;
    const grpc::StatusCode code = stub_->ListJobs(&ctx, v1::ListJobsRequest(), &r).error_code();
    *jobs = r.jobs_size();
    return code;
  }

 private:
  void Prepare(grpc::ClientContext* ctx) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    if (!token_.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  }
  static v1::JobRef Ref(const std::string& job, const std::string& job_token) {
    v1::JobRef ref;
    ref.set_job_id(job);
    ref.set_job_token(job_token);
    return ref;
  }
  std::unique_ptr<v1::Nowcaster::Stub> stub_;
  std::string token_;
};

TEST_F(SecureServerTest, TlsAdmitsOnlyClientsThatTrustItsCa) {
  NowcasterOptions o = Options();
  o.tls_cert_file = certs_->server_cert;
  o.tls_key_file = certs_->server_key;
  Start(o);
  EXPECT_TRUE(Connects(Channel(Tls(certs_->ca_cert))));
  EXPECT_FALSE(Connects(Channel(grpc::InsecureChannelCredentials())));  // plaintext client
  EXPECT_FALSE(Connects(Channel(Tls(certs_->other_ca_cert))));          // does not trust it
  // The certificate names localhost as well (the client's DNS expansion connects to the IPs
  // of a name and checks the name).
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  EXPECT_TRUE(Connects(grpc::CreateCustomChannel(Target(), Tls(certs_->ca_cert), args)));
}

TEST_F(SecureServerTest, MutualTlsNeedsAClientCertificateFromTheCa) {
  NowcasterOptions o = Options();
  o.tls_cert_file = certs_->server_cert;
  o.tls_key_file = certs_->server_key;
  o.tls_client_ca_file = certs_->ca_cert;
  Start(o);
  EXPECT_TRUE(Connects(Channel(Tls(certs_->ca_cert, /*client_cert=*/true))));
  EXPECT_FALSE(Connects(Channel(Tls(certs_->ca_cert, /*client_cert=*/false))));
  EXPECT_FALSE(Connects(Channel(grpc::InsecureChannelCredentials())));
}

TEST_F(SecureServerTest, TokensDecideWhoMayCallWhat) {
  NowcasterOptions o = Options();
  o.tls_cert_file = certs_->server_cert;
  o.tls_key_file = certs_->server_key;
  o.auth_tokens_file = Dir() + "/tokens";
  Start(o);
  auto channel = Channel(Tls(certs_->ca_cert));
  Caller anonymous(channel, ""), stranger(channel, "not-a-known-token-0123456789");
  Caller alice(channel, kAliceToken), bob(channel, kBobToken), ops(channel, kAdminToken);
  std::string job_token;
  EXPECT_EQ(anonymous.Register("j-anon", &job_token), grpc::UNAUTHENTICATED);
  EXPECT_EQ(stranger.Register("j-stranger", &job_token), grpc::PERMISSION_DENIED);
  ASSERT_EQ(alice.Register("j-alice", &job_token), grpc::OK);
  ASSERT_FALSE(job_token.empty());

  // The job's calls: alice's token only (bob holds the job token too, as if it had leaked).
  for (Caller* other : {&bob, &ops, &stranger}) {
    EXPECT_EQ(other->GetJob("j-alice", job_token), grpc::PERMISSION_DENIED);
    EXPECT_EQ(other->PutState("j-alice", job_token), grpc::PERMISSION_DENIED);
    EXPECT_EQ(other->Predict("j-alice", job_token), grpc::PERMISSION_DENIED);
    EXPECT_EQ(other->Close("j-alice", job_token), grpc::PERMISSION_DENIED);
  }
  EXPECT_EQ(anonymous.GetJob("j-alice", job_token), grpc::UNAUTHENTICATED);
  EXPECT_EQ(anonymous.PutState("j-alice", job_token), grpc::UNAUTHENTICATED);
  EXPECT_EQ(anonymous.Predict("j-alice", job_token), grpc::UNAUTHENTICATED);
  EXPECT_EQ(alice.GetJob("j-alice", job_token), grpc::OK);
  EXPECT_EQ(alice.PutState("j-alice", job_token), grpc::OK);
  EXPECT_EQ(alice.Predict("j-alice", job_token), grpc::FAILED_PRECONDITION);  // 1 of 5 states

  // Admin view.
  int jobs = -1;
  EXPECT_EQ(anonymous.List(&jobs), grpc::UNAUTHENTICATED);
  EXPECT_EQ(alice.List(&jobs), grpc::PERMISSION_DENIED);
  EXPECT_EQ(ops.List(&jobs), grpc::OK);
  EXPECT_EQ(jobs, 1);
  EXPECT_EQ(alice.Close("j-alice", job_token), grpc::OK);
  EXPECT_EQ(ops.List(&jobs), grpc::OK);
  EXPECT_EQ(jobs, 0);
  // Health stays open (probes carry no token).
  EXPECT_TRUE(Connects(channel));
}

TEST_F(SecureServerTest, MetricsNeedTheirToken) {
  NowcasterOptions o = Options();
  o.metrics_port = kAnyPort;
  o.metrics_host = "127.0.0.1";
  o.metrics_token_file = Dir() + "/metrics_token";
  Start(o);
  const int port = server_->metrics_port();
  ASSERT_GT(port, 0);
  EXPECT_TRUE(absl::StartsWith(HttpGet(port, "/metrics", ""), "HTTP/1.1 401"));
  EXPECT_TRUE(
      absl::StartsWith(HttpGet(port, "/metrics", "Bearer wrong-token-0123456789"), "HTTP/1.1 401"));
  EXPECT_TRUE(absl::StartsWith(HttpGet(port, "/metrics", kMetricsToken), "HTTP/1.1 401"));
  const std::string ok = HttpGet(port, "/metrics", absl::StrCat("Bearer ", kMetricsToken));
  EXPECT_TRUE(absl::StartsWith(ok, "HTTP/1.1 200")) << ok.substr(0, 200);
  EXPECT_TRUE(absl::StrContains(ok, "nino_nowcaster_queue_depth"));
  EXPECT_FALSE(absl::StrContains(ok, kMetricsToken));
}

TEST_F(SecureServerTest, LivenessStaysServingWhileReadinessDrains) {
  Start(Options());
  auto channel = Channel(grpc::InsecureChannelCredentials());
  EXPECT_EQ(*CheckHealth(channel, kLivenessService, kTimeout), ServingStatus::kServing);
  EXPECT_EQ(*CheckHealth(channel, kServiceName, kTimeout), ServingStatus::kServing);
  server_->SetNotServing();  // what Shutdown() does first, for --lame_duck_ms
  EXPECT_EQ(*CheckHealth(channel, kLivenessService, kTimeout), ServingStatus::kServing);
  EXPECT_EQ(*CheckHealth(channel, kServiceName, kTimeout), ServingStatus::kNotServing);
  EXPECT_EQ(*CheckHealth(channel, "", kTimeout), ServingStatus::kNotServing);
}

TEST_F(SecureServerTest, NonLoopbackAddressesNeedTlsAndTokensOrAllowInsecure) {
  NowcasterOptions o = Options();
  o.address = "0.0.0.0:0";
  auto refused = NowcasterServer::BuildAndStart(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--allow_insecure"));
  o.allow_insecure = true;
  Start(o);
  server_->Shutdown();
  o.allow_insecure = false;
  o.tls_cert_file = certs_->server_cert;
  o.tls_key_file = certs_->server_key;
  o.auth_tokens_file = Dir() + "/tokens";
  Start(o);
}

TEST_F(SecureServerTest, MalformedSecurityFilesStopTheStart) {
  ASSERT_TRUE(WriteFile(Dir() + "/bad_tokens",
                        absl::StrCat(kAliceToken, " alice\n", kBobToken, " bob superuser\n")));
  NowcasterOptions o = Options();
  o.auth_tokens_file = Dir() + "/bad_tokens";
  auto bad = NowcasterServer::BuildAndStart(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "line 2")) << bad.status();
  EXPECT_FALSE(absl::StrContains(bad.status().message(), kBobToken)) << bad.status();
  o = Options();
  o.tls_cert_file = Dir() + "/missing.crt";
  o.tls_key_file = certs_->server_key;
  bad = NowcasterServer::BuildAndStart(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--tls_cert")) << bad.status();
}

}  // namespace
}  // namespace nino::nowcaster
