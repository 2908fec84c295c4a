// Bearer-token files, token matching, the non-loopback start-up rule and the TLS options,
// without a running server (secure_server_test.cc has the calls).
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "nowcaster/auth.h"
#include "nowcaster/exposure.h"
#include "nowcaster/options.h"
#include "nowcaster/tls.h"
#include "tests/testing/test_certs.h"

namespace nino::nowcaster {
namespace {

constexpr char kAlice[] = "alice-token-0123456789abcdef";
constexpr char kAdmin[] = "admin-token-0123456789abcdef";

TEST(AuthenticatorTest, ParsesPrincipalsCommentsAndAdmins) {
  auto auth = Authenticator::Parse(
      "# tokens\n\n alice-token-0123456789abcdef  alice\t\n"
      "admin-token-0123456789abcdef ops admin\nalice-token-2-0123456789abc alice\n",
      "tokens.txt");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->enabled());
  EXPECT_EQ(auth->num_principals(), 2u);
  auto alice = auth->Lookup(kAlice);
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->name, "alice");
  EXPECT_FALSE(alice->admin);
  auto rotated = auth->Lookup("alice-token-2-0123456789abc");
  ASSERT_TRUE(rotated.ok());
  EXPECT_EQ(rotated->name, "alice");
  auto admin = auth->Lookup(kAdmin);
  ASSERT_TRUE(admin.ok());
  EXPECT_TRUE(admin->admin);
  EXPECT_EQ(auth->Lookup("alice-token-0123456789abcdeX").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->Lookup("").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(auth->CheckOwner(*alice, "alice", "j").ok());
  EXPECT_EQ(auth->CheckOwner(*admin, "alice", "j").code(), absl::StatusCode::kPermissionDenied);
}

// Each malformed file is refused with the line number, never with a token in the message.
TEST(AuthenticatorTest, RefusesMalformedFilesNamingTheLine) {
  struct Case {
    std::string text;
    std::string line;
  };
  const Case cases[] = {
      {"alice-token-0123456789abcdef\n", "line 1"},                // no principal
      {"# c\nshort alice\n", "line 2"},                            // token too short
      {"\nalice-token-0123456789abcdef al/ice\n", "line 2"},       // bad principal
      {"alice-token-0123456789abcdef alice root\n", "line 1"},     // not "admin"
      {"alice-token-0123456789abcdef alice admin x\n", "line 1"},  // 4 fields
      {"alice-token-0123456789abcdef a\nalice-token-0123456789abcdef b\n", "line 2"},  // dup
  };
  for (const Case& c : cases) {
    auto auth = Authenticator::Parse(c.text, "--auth_tokens_file=t");
    ASSERT_FALSE(auth.ok()) << c.text;
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(auth.status().message(), "--auth_tokens_file=t " + c.line))
        << auth.status();
    EXPECT_FALSE(absl::StrContains(auth.status().message(), "0123456789abcdef")) << auth.status();
  }
  EXPECT_FALSE(Authenticator::Parse("# only a comment\n", "t").ok());
  EXPECT_EQ(Authenticator::FromFile("/nonexistent/tokens").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Authenticator::FromFile("")->enabled());
}

TEST(AuthenticatorTest, BearerHeaderForms) {
  EXPECT_EQ(*BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(*BearerToken("bearer  abc "), "abc");
  EXPECT_EQ(BearerToken("Basic abc").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(BearerToken("Bearer ").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(BearerToken("").status().code(), absl::StatusCode::kUnauthenticated);
  const TokenDigest d(kAlice);
  EXPECT_TRUE(d.Matches(kAlice));
  EXPECT_FALSE(d.Matches(kAdmin));
  EXPECT_FALSE(d.Matches(""));
}

TEST(ExposureTest, LoopbackHosts) {
  for (const char* h : {"127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  }
  for (const char* h : {"0.0.0.0", "[::]", "10.0.0.1", "example.org", "128.0.0.1", ""}) {
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
  }
  EXPECT_EQ(HostOf("[::1]:50051"), "[::1]");
  EXPECT_EQ(HostOf("0.0.0.0:0"), "0.0.0.0");
}

TEST(ExposureTest, NonLoopbackNeedsTlsAndTokensOrAllowInsecure) {
  NowcasterOptions o;
  o.address = "127.0.0.1:0";
  EXPECT_EQ(*CheckExposure(o), "");
  o.address = "0.0.0.0:50051";
  auto refused = CheckExposure(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--allow_insecure"));
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "TLS"));
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--auth_tokens_file"));
  o.tls_cert_file = "c";
  o.tls_key_file = "k";
  refused = CheckExposure(o);  // TLS alone is not enough
  ASSERT_FALSE(refused.ok());
  EXPECT_FALSE(absl::StrContains(refused.status().message(), "--tls_cert"));
  o.auth_tokens_file = "t";
  EXPECT_EQ(*CheckExposure(o), "");
  o.tls_cert_file = o.tls_key_file = "";
  o.allow_insecure = true;
  auto warned = CheckExposure(o);
  ASSERT_TRUE(warned.ok());
  EXPECT_TRUE(absl::StrContains(*warned, "WARNING")) << *warned;
  EXPECT_TRUE(absl::StrContains(*warned, "mesh")) << *warned;
}

TEST(TlsOptionsTest, ValidationAndFiles) {
  NowcasterOptions o;
  o.address = "127.0.0.1:0";
  o.tls_cert_file = "cert.pem";
  EXPECT_EQ(ValidateOptions(o).code(), absl::StatusCode::kInvalidArgument);  // no key
  o.tls_cert_file = "";
  o.tls_client_ca_file = "ca.pem";
  EXPECT_EQ(ValidateOptions(o).code(), absl::StatusCode::kInvalidArgument);  // mTLS without TLS
  o.tls_client_ca_file = "";
  o.metrics_token_file = "t";
  EXPECT_EQ(ValidateOptions(o).code(), absl::StatusCode::kInvalidArgument);  // no metrics port

  auto certs = nino::testing::MakeTestCerts(::testing::TempDir() + "/security_test_pki");
  ASSERT_TRUE(certs.ok()) << certs.status();
  NowcasterOptions tls;
  tls.tls_cert_file = certs->server_cert;
  tls.tls_key_file = certs->server_key;
  EXPECT_TRUE(MakeServerCredentials(tls).ok());
  EXPECT_STREQ(TransportName(tls), "TLS");
  tls.tls_client_ca_file = certs->ca_cert;
  EXPECT_TRUE(MakeServerCredentials(tls).ok());
  EXPECT_STREQ(TransportName(tls), "mutual TLS");
  tls.tls_key_file = certs->ca_cert;  // a certificate where the key belongs
  auto bad = MakeServerCredentials(tls);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--tls_key")) << bad.status();
  tls.tls_key_file = "/nonexistent/key.pem";
  EXPECT_EQ(MakeServerCredentials(tls).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nino::nowcaster
