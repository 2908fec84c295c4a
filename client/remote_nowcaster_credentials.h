// How a client authenticates to nino_nowcaster and secures its connection: TLS (optionally with
// a client certificate for mutual TLS) and a bearer token sent with every call.
#ifndef NINO_CLIENT_REMOTE_NOWCASTER_CREDENTIALS_H_
#define NINO_CLIENT_REMOTE_NOWCASTER_CREDENTIALS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace nino::client {

// File paths, as flags give them. All empty: plaintext, no token (today's loopback setups).
struct NowcasterCredentials {
  // PEM CA bundle that verifies the server's certificate. Set: the channel uses TLS.
  std::string tls_ca_file;
  // PEM client certificate chain and its key, both or neither (mutual TLS; needs tls_ca_file).
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server certificate must carry, instead of the host of the address (tests
  // with a "localhost" certificate reached at 127.0.0.1, or IP replicas of a DNS name).
  std::string tls_server_name;
  // First line: the bearer token sent as "authorization: Bearer <token>" on every call.
  std::string auth_token_file;
};

// The files of NowcasterCredentials read once, ready for channels and calls.
class ChannelSecurity {
 public:
  // Reads the files. INVALID_ARGUMENT naming the option and path (never a token) for a
  // missing, empty or non-PEM file, a certificate without its key, or a client certificate
  // without tls_ca_file.
  static absl::StatusOr<ChannelSecurity> Load(const NowcasterCredentials& credentials);

  bool tls() const { return tls_; }
  // Channel credentials for a replica; `host_name` is the DNS name the replica's address was
  // resolved from ("" for an address given as is). With TLS, the name checked against the
  // server certificate is tls_server_name, else `host_name`, else the address's own host
  // (set through `args`).
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const std::string& host_name,
                                                               grpc::ChannelArguments* args) const;
  // Adds the bearer token (if any) to a call.
  void Decorate(grpc::ClientContext* context) const;

 private:
  bool tls_ = false;
  grpc::SslCredentialsOptions ssl_;
  std::string server_name_;
  std::string authorization_;  // "Bearer <token>" or ""
};

}  // namespace nino::client

#endif  // NINO_CLIENT_REMOTE_NOWCASTER_CREDENTIALS_H_
