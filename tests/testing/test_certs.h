// Part of the test library (tests/testing): a throw-away PKI made with the `openssl` command line
// tool (Debian package openssl; tools/setup.sh installs it): a CA, a server certificate for
// localhost / 127.0.0.1 / ::1 and a client certificate signed by it, and a second, unrelated CA.
// Not testonly and free of gtest: the TLS benchmarks (tools/bench_stream, bench_roundtrip) use it.
#ifndef NINO_TESTS_TESTING_TEST_CERTS_H_
#define NINO_TESTS_TESTING_TEST_CERTS_H_

#include <string>

#include "absl/status/statusor.h"

namespace nino::testing {

// PEM file paths.
struct TestCerts {
  std::string ca_cert;
  std::string server_cert, server_key;  // SAN DNS:localhost, IP:127.0.0.1, IP:::1
  std::string client_cert, client_key;  // CN=trainer, signed by ca_cert
  std::string other_ca_cert;            // a CA that signed none of the above
};

// Writes the files into `dir` (created if missing; EC P-256 keys, valid 2 days).
// FAILED_PRECONDITION when openssl is missing or fails, with its output.
absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir);

// Writes `text` to `path` (token files beside the certificates); false on failure. Tests may use
// WriteFile (test_util.h); this one is for the benchmarks, which do not link gtest.
bool WriteTestFile(const std::string& path, const std::string& text);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_TEST_CERTS_H_
