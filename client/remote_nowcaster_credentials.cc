#include "client/remote_nowcaster_credentials.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nowcaster/secret_file.h"

namespace nino::client {
namespace {

absl::StatusOr<std::string> ReadPem(absl::string_view option, const std::string& path,
                                    absl::string_view kind) {
  absl::StatusOr<std::string> text = nowcaster::ReadSecretFile(option, path);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "-----BEGIN ") || !absl::StrContains(*text, kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, "=", path, ": not a PEM file holding a ", kind));
  }
  return text;
}

}  // namespace

absl::StatusOr<ChannelSecurity> ChannelSecurity::Load(const NowcasterCredentials& c) {
  ChannelSecurity s;
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "nowcaster TLS: a client certificate needs its key (tls_cert_file and tls_key_file), "
        "both or neither");
  }
  if (!c.tls_cert_file.empty() && c.tls_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "nowcaster TLS: a client certificate needs the CA that verifies the server "
        "(tls_ca_file)");
  }
  if (!c.tls_server_name.empty() && c.tls_ca_file.empty()) {
    return absl::InvalidArgumentError("nowcaster TLS: tls_server_name needs tls_ca_file");
  }
  if (!c.tls_ca_file.empty()) {
    s.tls_ = true;
    auto ca = ReadPem("tls_ca_file", c.tls_ca_file, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    s.ssl_.pem_root_certs = *ca;
    s.server_name_ = c.tls_server_name;
  }
  if (!c.tls_cert_file.empty()) {
    auto cert = ReadPem("tls_cert_file", c.tls_cert_file, "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem("tls_key_file", c.tls_key_file, "PRIVATE KEY");
    if (!key.ok()) return key.status();
    s.ssl_.pem_cert_chain = *cert;
    s.ssl_.pem_private_key = *key;
  }
  if (!c.auth_token_file.empty()) {
    auto token = nowcaster::ReadTokenFile("auth_token_file", c.auth_token_file);
    if (!token.ok()) return token.status();
    s.authorization_ = absl::StrCat("Bearer ", *token);
  }
  return s;
}

std::shared_ptr<grpc::ChannelCredentials> ChannelSecurity::ChannelCredentials(
    const std::string& host_name, grpc::ChannelArguments* args) const {
  if (!tls_) return grpc::InsecureChannelCredentials();
  const std::string& name = !server_name_.empty() ? server_name_ : host_name;
  if (!name.empty()) args->SetSslTargetNameOverride(name);
  return grpc::SslCredentials(ssl_);
}

void ChannelSecurity::Decorate(grpc::ClientContext* context) const {
  if (!authorization_.empty()) context->AddMetadata("authorization", authorization_);
}

}  // namespace nino::client
