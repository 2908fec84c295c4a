#include "nowcaster/health_probe.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nowcaster/secret_file.h"

namespace nino::nowcaster {
namespace {

// The file at `path`, which must be PEM holding a `kind` ("CERTIFICATE", "PRIVATE KEY").
absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path,
                                    absl::string_view kind) {
  absl::StatusOr<std::string> text = ReadSecretFile(flag, path);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "-----BEGIN ") || !absl::StrContains(*text, kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": not a PEM file holding a ", kind));
  }
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const HealthProbeOptions& o, grpc::ChannelArguments* args) {
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key: both or neither");
  }
  if (o.tls_ca_file.empty()) {
    if (!o.tls_cert_file.empty() || !o.tls_server_name.empty()) {
      return absl::InvalidArgumentError(
          "--tls_cert / --tls_server_name need --tls_ca (the CA that verifies the server)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = ReadPem("--tls_ca", o.tls_ca_file, "CERTIFICATE");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!o.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem("--tls_cert", o.tls_cert_file, "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem("--tls_key", o.tls_key_file, "PRIVATE KEY");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  if (!o.tls_server_name.empty()) args->SetSslTargetNameOverride(o.tls_server_name);
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> HealthProbeChannel(const HealthProbeOptions& o) {
  if (o.address.empty()) return absl::InvalidArgumentError("--address is empty");
  grpc::ChannelArguments args;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = Credentials(o, &args);
  if (!creds.ok()) return creds.status();
  return grpc::CreateCustomChannel(o.address, *creds, args);
}

absl::StatusOr<ServingStatus> ProbeHealth(const HealthProbeOptions& o) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = HealthProbeChannel(o);
  if (!channel.ok()) return channel.status();
  return CheckHealth(*channel, o.service, o.timeout);
}

const char* ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

}  // namespace nino::nowcaster
