#include "tests/testing/test_certs.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace nino::testing {
namespace {

constexpr char kNewKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

// Runs `command` in a shell with stderr captured; FAILED_PRECONDITION with its output.
absl::Status Run(const std::string& command, const std::string& log) {
  const int rc = std::system(absl::StrCat(command, " >", log, " 2>&1").c_str());
  if (rc == 0) return absl::OkStatus();
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return absl::FailedPreconditionError(absl::StrCat("`", command, "` failed (exit ", rc,
                                                    "; is Debian's openssl installed? ",
                                                    "tools/setup.sh installs it): ", output));
}

// A CA: self-signed certificate with the default v3_ca extensions (CA:TRUE).
absl::Status MakeCa(const std::string& dir, const std::string& name, const std::string& log) {
  return Run(absl::StrCat("openssl req -x509 ", kNewKey, " -keyout ", dir, "/", name, ".key -out ",
                          dir, "/", name, ".crt -days 2 -subj '/CN=nino test ", name, "'"),
             log);
}

// A leaf certificate `name` with extensions `ext`, signed by the CA `ca`.
absl::Status MakeLeaf(const std::string& dir, const std::string& name, const std::string& cn,
                      const std::string& ext, const std::string& ca, const std::string& log) {
  const std::string base = absl::StrCat(dir, "/", name);
  if (!WriteTestFile(base + ".ext", ext)) {
    return absl::FailedPreconditionError(absl::StrCat("cannot write ", base, ".ext"));
  }
  absl::Status s = Run(absl::StrCat("openssl req ", kNewKey, " -keyout ", base, ".key -out ", base,
                                    ".csr -subj '/CN=", cn, "'"),
                       log);
  if (!s.ok()) return s;
  return Run(absl::StrCat("openssl x509 -req -in ", base, ".csr -CA ", dir, "/", ca, ".crt -CAkey ",
                          dir, "/", ca, ".key -set_serial 0x", static_cast<int>(name[0]) * 4099,
                          " -days 2 -out ", base, ".crt -extfile ", base, ".ext"),
             log);
}

}  // namespace

bool WriteTestFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string log = dir + "/openssl.log";
  if (absl::Status s = MakeCa(dir, "ca", log); !s.ok()) return s;
  if (absl::Status s = MakeCa(dir, "other_ca", log); !s.ok()) return s;
  if (absl::Status s = MakeLeaf(dir, "server", "localhost",
                                "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                                "extendedKeyUsage=serverAuth\n",
                                "ca", log);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          MakeLeaf(dir, "client", "trainer", "extendedKeyUsage=clientAuth\n", "ca", log);
      !s.ok()) {
    return s;
  }
  TestCerts c;
  c.ca_cert = dir + "/ca.crt";
  c.other_ca_cert = dir + "/other_ca.crt";
  c.server_cert = dir + "/server.crt";
  c.server_key = dir + "/server.key";
  c.client_cert = dir + "/client.crt";
  c.client_key = dir + "/client.key";
  return c;
}

}  // namespace nino::testing
