// The gRPC endpoint's transport credentials: plaintext, TLS, or mutual TLS.
#ifndef NINO_NOWCASTER_TLS_H_
#define NINO_NOWCASTER_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/statusor.h"
#include "nowcaster/options.h"

namespace nino::nowcaster {

// Insecure credentials when options.tls_cert_file is empty. Otherwise TLS with the PEM
// certificate chain tls_cert_file and key tls_key_file; with tls_client_ca_file, clients must
// present a certificate that this CA bundle verifies (mutual TLS; the handshake fails without).
// INVALID_ARGUMENT naming the flag and path of a file that cannot be read or is not PEM.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const NowcasterOptions& options);

// "plaintext", "TLS" or "mutual TLS", for the start-up log.
const char* TransportName(const NowcasterOptions& options);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_TLS_H_
