// The project's test library: what our tests need of the machine, in one place. Loopback only,
// temp folders under ::testing::TempDir(), nothing that a test would otherwise write again.
//
//   SharedDir()        where ../shared is ($NINO_SHARED_DIR, else the compiled-in default). Only
//                      tests that compare with the official code or its files may skip without
//                      it; everything else uses a synthetic fixture (synthetic_checkpoint.h).
//   FreePort()         a TCP port on 127.0.0.1 that was free a moment ago.
//   LoopbackSocket     a socket bound to 127.0.0.1:<free port>, optionally listening (a "black
//                      hole": it accepts connections at the kernel level and never answers).
//   MakeTestDir(name)  a fresh, empty folder under ::testing::TempDir().
//   HttpGet(port, path) a plain HTTP/1.0 GET on 127.0.0.1 (/metrics, /healthz probes).
//   ReadFile / WriteFile, RunfilesPath.
//
// Thread-compatible; no global state beyond the process's environment.
#ifndef NINO_TESTS_TESTING_TEST_UTIL_H_
#define NINO_TESTS_TESTING_TEST_UTIL_H_

#include <string>

namespace nino::testing {

// $NINO_SHARED_DIR if set and non-empty, else the compiled-in default (../shared beside the
// source tree), else "".
std::string SharedDir();

// SharedDir()/<rel> if that file or folder exists, else "" (the caller skips, naming the path).
std::string SharedPath(const std::string& rel);

// A file of this workspace in the test's runfiles: $<override_env> when that is set (CMake
// builds), else $TEST_SRCDIR/$TEST_WORKSPACE/<rel>, else <rel> (relative to the workspace).
std::string RunfilesPath(const std::string& rel, const char* override_env = nullptr);
std::string TrainBinary();      // trainer/nino_train ($NINO_TRAIN_BIN)
std::string NowcasterBinary();  // nowcaster/nino_nowcaster ($NINO_NOWCASTER_BIN)

// A loopback TCP socket on a free port; closed on destruction.
class LoopbackSocket {
 public:
  // listen_on: listen (backlog 16) but never accept: connections hang until their deadline.
  explicit LoopbackSocket(bool listen_on);
  ~LoopbackSocket();
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;
  void Close();
  int fd = -1;
  int port = 0;  // 0 if the socket could not be bound
};

// A port on 127.0.0.1 that was free when this returned (bound to port 0, read back, closed).
// Another process may take it before the caller binds it: callers that can bind port 0 should.
int FreePort();

// "127.0.0.1:<port>".
std::string LoopbackAddress(int port);

// A new, empty folder ::testing::TempDir()/<name>.<pid>.<n> (n counts calls in this process);
// its path. Fails the current test (and returns "") if it cannot be made.
std::string MakeTestDir(const std::string& name);

// GET http://127.0.0.1:<port><path> (HTTP/1.0, Connection: close), with an Authorization header
// if `authorization` is not empty; the whole response, headers and body. "connect failed" if
// nothing accepts; gives up reading after `timeout_ms`.
std::string HttpGet(int port, const std::string& path, const std::string& authorization = "",
                    int timeout_ms = 10000);

// The bytes of `path`, or "" if it cannot be read.
std::string ReadFile(const std::string& path);

// Replaces `path` with `bytes`; false on failure.
bool WriteFile(const std::string& path, const std::string& bytes);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_TEST_UTIL_H_
