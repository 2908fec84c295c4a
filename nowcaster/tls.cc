#include "nowcaster/tls.h"

#include <grpcpp/security/server_credentials.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nowcaster/secret_file.h"

namespace nino::nowcaster {
namespace {

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path,
                                    absl::string_view kind) {
  absl::StatusOr<std::string> text = ReadSecretFile(flag, path);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, absl::StrCat("-----BEGIN ")) || !absl::StrContains(*text, kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": not a PEM file holding a ", kind));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const NowcasterOptions& options) {
  if (options.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  absl::StatusOr<std::string> cert = ReadPem("--tls_cert", options.tls_cert_file, "CERTIFICATE");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("--tls_key", options.tls_key_file, "PRIVATE KEY");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!options.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem("--tls_client_ca", options.tls_client_ca_file, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

const char* TransportName(const NowcasterOptions& options) {
  if (options.tls_cert_file.empty()) return "plaintext";
  return options.tls_client_ca_file.empty() ? "TLS" : "mutual TLS";
}

}  // namespace nino::nowcaster
