#include "trainer/dist/distributed.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <utility>
#include <vector>

// NCCL: only with a CUDA LibTorch (NINO_WITH_CUDA, set by @libtorch//:torch) whose nccl.h is
// on the include path (pip wheels keep it in site-packages/nvidia/nccl/include); otherwise
// CUDA tensors go through Gloo. ProcessGroupNCCL.hpp is wrapped in #ifdef USE_C10D_NCCL,
// which we define here when the build did not.
#if defined(NINO_WITH_CUDA) && defined(__has_include)
#if __has_include(<nccl.h>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#define NINO_DIST_NCCL 1
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace nino::trainer {
namespace {

// ---------------------------------------------------------------------------------------------
// Environment.

// Parses environment variable `name` into *out; leaves *out alone when unset.
absl::Status ReadIntEnv(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (v == nullptr) return absl::OkStatus();
  int parsed = 0;
  if (!absl::SimpleAtoi(v, &parsed)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("environment variable %s='%s' is not a decimal integer", name, v));
  }
  *out = parsed;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Exceptions -> Status.

std::string ExceptionText(const std::exception& e) {
  std::string text;
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) {
    text = ce->what_without_backtrace();
  } else {
    text = e.what();
  }
  absl::StripAsciiWhitespace(&text);
  constexpr size_t kMax = 2000;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

// By message: the exception classes differ between LibTorch versions (c10d::TimeoutError in
// 1.13, c10::DistNetworkError and friends later), the wording ("timed out", "Socket Timeout")
// does not.
bool IsTimeout(const std::exception&, const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  return absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout");
}

absl::Status StatusFromException(absl::string_view what, absl::string_view where,
                                 const std::exception& e) {
  const std::string text = ExceptionText(e);
  const std::string msg = absl::StrCat(what, " failed (", where, "): ", text);
  return IsTimeout(e, text) ? absl::DeadlineExceededError(msg) : absl::UnavailableError(msg);
}

absl::Status StatusFromUnknown(absl::string_view what, absl::string_view where) {
  return absl::UnknownError(absl::StrCat(what, " failed (", where, "): unknown exception"));
}

// Waits until something accepts TCP connections at host:port (each attempt connects and
// closes at once). DEADLINE_EXCEEDED when nothing does before `deadline`, UNAVAILABLE when the
// host name does not resolve.
absl::Status WaitForListener(const std::string& host, int port,
                             std::chrono::steady_clock::time_point deadline,
                             std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  std::string last_error = "no attempt";
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const std::string service = std::to_string(port);
    const int gai = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
    if (gai != 0 && gai != EAI_AGAIN) {
      return absl::UnavailableError(
          absl::StrCat("cannot resolve master address '", host, "': ", gai_strerror(gai)));
    }
    if (gai != 0) last_error = gai_strerror(gai);
    for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
      const int fd =
          socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      int err = 0;
      if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
          const auto left =
              std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
          pollfd pfd{fd, POLLOUT, 0};
          const int wait_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 1, 1000));
          if (poll(&pfd, 1, wait_ms) == 1) {
            socklen_t len = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
          } else {
            err = ETIMEDOUT;
          }
        }
      }
      close(fd);
      if (err == 0) {
        freeaddrinfo(list);
        return absl::OkStatus();
      }
      last_error = std::strerror(err);
    }
    if (list != nullptr) freeaddrinfo(list);
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "nothing accepted connections at %s:%d within %d ms (rank 0 hosts the store there; "
          "last error: %s)",
          host, port, timeout.count(), last_error));
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(std::chrono::milliseconds(50), deadline - Clock::now()));
  }
}

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || absl::StartsWith(addr, "127.");
}

c10d::ReduceOp ToReduceOp(Distributed::Op op) {
  switch (op) {
    case Distributed::Op::kMin:
      return c10d::ReduceOp::MIN;
    case Distributed::Op::kMax:
      return c10d::ReduceOp::MAX;
    case Distributed::Op::kSum:
    default:
      return c10d::ReduceOp::SUM;
  }
}

// ---------------------------------------------------------------------------------------------
// Buckets: a run of contiguous 1-D tensors cut into pieces of at most `cap` elements.

struct Segment {
  size_t index;  // which tensor
  int64_t offset;
  int64_t length;
};

struct Bucket {
  std::vector<Segment> segments;
  int64_t numel = 0;
};

std::vector<Bucket> PlanBuckets(const std::vector<at::Tensor>& flats, int64_t bucket_bytes) {
  std::vector<Bucket> buckets;
  Bucket current;
  int64_t cap = 0;
  at::ScalarType dtype = at::ScalarType::Undefined;
  at::Device device = at::kCPU;
  auto close = [&] {
    if (current.numel > 0) buckets.push_back(std::move(current));
    current = Bucket();
  };
  for (size_t i = 0; i < flats.size(); ++i) {
    const at::Tensor& t = flats[i];
    if (t.numel() == 0) continue;
    if (current.numel > 0 && (t.scalar_type() != dtype || t.device() != device)) close();
    dtype = t.scalar_type();
    device = t.device();
    cap = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(t.element_size()));
    int64_t offset = 0;
    while (offset < t.numel()) {
      const int64_t take = std::min(t.numel() - offset, cap - current.numel);
      current.segments.push_back(Segment{i, offset, take});
      current.numel += take;
      offset += take;
      if (current.numel >= cap) close();
    }
  }
  close();
  return buckets;
}

// FNV-1a over 64-bit words.
class Fingerprint {
 public:
  void Add(int64_t v) {
    uint64_t u = static_cast<uint64_t>(v);
    for (int i = 0; i < 8; ++i) {
      h_ ^= (u >> (8 * i)) & 0xff;
      h_ *= 1099511628211ull;
    }
  }
  void AddTensor(const at::Tensor& t) {
    Add(static_cast<int64_t>(t.scalar_type()));
    Add(static_cast<int64_t>(t.device().type()));
    Add(t.dim());
    for (int64_t s : t.sizes()) Add(s);
  }
  // Positive and below 2^62, so that -value is representable and distinct.
  int64_t value() const { return static_cast<int64_t>(h_ & ((uint64_t{1} << 62) - 1)); }

 private:
  uint64_t h_ = 14695981039346656037ull;
};

}  // namespace

// -----------------------------------------------------------------------------------------------
// DistEnv.

absl::StatusOr<DistEnv> DistEnv::FromEnv() {
  DistEnv env;
  for (auto [name, field] : {std::pair<const char*, int*>{"RANK", &env.rank},
                             {"WORLD_SIZE", &env.world_size},
                             {"LOCAL_RANK", &env.local_rank},
                             {"MASTER_PORT", &env.master_port}}) {
    absl::Status s = ReadIntEnv(name, field);
    if (!s.ok()) return s;
  }
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr) {
    env.master_addr = std::string(absl::StripAsciiWhitespace(addr));
    if (env.master_addr.empty()) {
      return absl::InvalidArgumentError("environment variable MASTER_ADDR is empty");
    }
  }
  if (env.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("environment variable WORLD_SIZE=%d must be >= 1", env.world_size));
  }
  if (env.rank < 0 || env.rank >= env.world_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "environment variable RANK=%d must be in [0, WORLD_SIZE=%d)", env.rank, env.world_size));
  }
  if (env.local_rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("environment variable LOCAL_RANK=%d must be >= 0", env.local_rank));
  }
  if (env.master_port < 1 || env.master_port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "environment variable MASTER_PORT=%d is out of range [1, 65535]", env.master_port));
  }
  return env;
}

std::string DistEnv::DebugString() const {
  return absl::StrFormat("rank %d/%d (local %d), master %s:%d", rank, world_size, local_rank,
                         master_addr, master_port);
}

// -----------------------------------------------------------------------------------------------
// Impl: one process group behind a small virtual interface. A template, because the process
// group classes derive from c10d::ProcessGroup in LibTorch 1.13 but from c10d::Backend in 2.x;
// both have the same allreduce/broadcast/barrier signatures.

class Distributed::Impl {
 public:
  Impl(c10::intrusive_ptr<c10d::Store> store, at::Device scalar_device, std::string where)
      : store_(std::move(store)), scalar_device_(scalar_device), where_(std::move(where)) {}
  virtual ~Impl() = default;

  virtual const char* name() const = 0;
  // These throw on failure; callers convert to Status.
  virtual void Allreduce(at::Tensor& t, c10d::ReduceOp op) = 0;
  virtual void Broadcast(at::Tensor& t, int root) = 0;
  virtual void Barrier() = 0;

  const at::Device& scalar_device() const { return scalar_device_; }
  const std::string& where() const { return where_; }

  // A reusable 1-D buffer of `numel` elements with the dtype and device of `like` (the packed
  // buckets: buckets run one after another, so one buffer per dtype/device suffices and no
  // memory is allocated per step once the largest bucket has been seen).
  at::Tensor Scratch(const at::Tensor& like, int64_t numel) {
    for (at::Tensor& buf : scratch_) {
      if (buf.scalar_type() == like.scalar_type() && buf.device() == like.device()) {
        if (buf.numel() < numel) buf = at::empty({numel}, like.options());
        return buf.narrow(0, 0, numel);
      }
    }
    scratch_.push_back(at::empty({numel}, like.options()));
    return scratch_.back();
  }

 private:
  std::vector<at::Tensor> scratch_;
  c10::intrusive_ptr<c10d::Store> store_;  // outlives the process group (declared first)
  at::Device scalar_device_;
  std::string where_;
};

namespace {

template <class PG>
class PgImpl final : public Distributed::Impl {
 public:
  PgImpl(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<PG> pg, const char* name,
         at::Device scalar_device, std::string where)
      : Impl(std::move(store), scalar_device, std::move(where)), pg_(std::move(pg)), name_(name) {}
  ~PgImpl() override { pg_.reset(); }

  const char* name() const override { return name_; }

  void Allreduce(at::Tensor& t, c10d::ReduceOp op) override {
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = op;
    pg_->allreduce(v, opts)->wait();
  }

  void Broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    pg_->broadcast(v, opts)->wait();
  }

  void Barrier() override {
    if (std::string(name_) == "gloo") {
      pg_->barrier()->wait();
      return;
    }
    // NCCL's barrier guesses the device from the rank; an allreduce on our own device followed
    // by a host read is an exact barrier on every version.
    at::Tensor t = at::zeros({1}, at::TensorOptions().device(scalar_device()).dtype(at::kFloat));
    Allreduce(t, c10d::ReduceOp::SUM);
    (void)t.item<float>();
  }

 private:
  c10::intrusive_ptr<PG> pg_;
  const char* name_;
};

}  // namespace

// -----------------------------------------------------------------------------------------------
// Distributed.

Distributed::Distributed(DistEnv env, std::unique_ptr<Impl> impl)
    : env_(std::move(env)), impl_(std::move(impl)) {}

Distributed::~Distributed() = default;

const char* Distributed::backend_name() const { return impl_ ? impl_->name() : "none"; }

absl::StatusOr<std::unique_ptr<Distributed>> Distributed::Create(
    const DistEnv& env, torch::Device device, std::chrono::milliseconds timeout) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("Distributed::Create: bad rank/world size: ", env.DebugString()));
  }
  if (env.master_port < 1 || env.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("Distributed::Create: master port out of range: ", env.DebugString()));
  }
  if (env.world_size == 1) {
    return std::unique_ptr<Distributed>(new Distributed(env, nullptr));
  }
  if (timeout.count() <= 0) {
    return absl::InvalidArgumentError("Distributed::Create: timeout must be positive");
  }
  const std::string where = env.DebugString();

  // 1) Rendezvous store: rank 0 listens on master_port (all interfaces), the others connect.
  // LibTorch's own waits are not used: TCPStore's waitWorkers gives up silently on rank 0, and
  // 1.13's client connect stops retrying about a second before its timeout and rounds the
  // per-attempt wait down to whole seconds (so timeouts <= 1 s fail at once). Instead, the
  // other ranks first wait (until the deadline) for the port to accept TCP connections, then
  // construct the store with a generous connect timeout; then a join step through the store.
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + timeout;
  auto remaining = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  };
  if (env.rank != 0) {
    absl::Status s = WaitForListener(env.master_addr, env.master_port, deadline, timeout);
    if (!s.ok())
      return absl::Status(s.code(), absl::StrCat("rendezvous failed (", where, "): ", s.message()));
  }
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = false;
    so.timeout = std::max<std::chrono::milliseconds>(remaining(), std::chrono::seconds(5));
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    store->setTimeout(timeout);
  } catch (const std::exception& e) {
    return StatusFromException(
        env.rank == 0 ? "TCPStore server (rank 0 hosts the store)" : "TCPStore client connect",
        where, e);
  } catch (...) {
    return StatusFromUnknown("TCPStore", where);
  }

  // Join: every rank announces itself; rank 0 waits for all of them, then lets everybody go.
  const std::string prefix = "nino_dist/";
  try {
    store->set(absl::StrCat(prefix, "rank/", env.rank), std::vector<uint8_t>{1});
    if (env.rank == 0) {
      std::vector<std::string> keys;
      for (int r = 1; r < env.world_size; ++r) keys.push_back(absl::StrCat(prefix, "rank/", r));
      try {
        store->wait(keys, remaining());
      } catch (const std::exception& e) {
        std::vector<int> missing;
        for (int r = 1; r < env.world_size; ++r) {
          if (!store->check({absl::StrCat(prefix, "rank/", r)})) missing.push_back(r);
        }
        if (missing.empty()) throw;
        return absl::DeadlineExceededError(
            absl::StrFormat("rendezvous failed (%s): rank(s) %s of %d did not join within %d ms",
                            where, absl::StrJoin(missing, ","), env.world_size, timeout.count()));
      }
      store->set(prefix + "go", std::vector<uint8_t>{1});
    } else {
      try {
        store->wait({prefix + "go"}, remaining());
      } catch (const std::exception& e) {
        if (!IsTimeout(e, ExceptionText(e))) throw;
        return absl::DeadlineExceededError(absl::StrFormat(
            "rendezvous failed (%s): connected, but not all %d ranks joined within %d ms", where,
            env.world_size, timeout.count()));
      }
    }
  } catch (const std::exception& e) {
    return StatusFromException("rendezvous", where, e);
  } catch (...) {
    return StatusFromUnknown("rendezvous", where);
  }

  // 2) Process group.
  std::unique_ptr<Impl> impl;
  try {
    bool use_nccl = false;
#ifdef NINO_DIST_NCCL
    use_nccl = device.is_cuda();
#endif
    if (use_nccl) {
#ifdef NINO_DIST_NCCL
      const int index = device.has_index() ? device.index() : env.local_rank;
      const at::Device cuda(at::kCUDA, static_cast<c10::DeviceIndex>(index));
      c10::cuda::set_device(cuda.index());
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, opts);
      impl = std::make_unique<PgImpl<c10d::ProcessGroupNCCL>>(store, std::move(pg), "nccl", cuda,
                                                              where);
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != '\0') {
        for (absl::string_view name : absl::StrSplit(ifname, ',', absl::SkipEmpty())) {
          opts->devices.push_back(
              c10d::ProcessGroupGloo::createDeviceForInterface(std::string(name)));
        }
      } else if (IsLoopback(env.master_addr)) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, opts);
      // Gloo reduces scalars on the CPU even when gradients live on a CUDA device.
      impl = std::make_unique<PgImpl<c10d::ProcessGroupGloo>>(store, std::move(pg), "gloo",
                                                              at::Device(at::kCPU), where);
    }
  } catch (const std::exception& e) {
    return StatusFromException("process group rendezvous", where, e);
  } catch (...) {
    return StatusFromUnknown("process group rendezvous", where);
  }
  return std::unique_ptr<Distributed>(new Distributed(env, std::move(impl)));
}

namespace {

// Runs `fn` (which may throw) and converts exceptions.
template <class Fn>
absl::Status Guarded(absl::string_view what, const std::string& where, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return StatusFromException(what, where, e);
  } catch (...) {
    return StatusFromUnknown(what, where);
  }
}

// All ranks must pass the same layout; verified with one allreduce(MAX) of {h, -h}.
absl::Status CheckSameLayout(Distributed::Impl& impl, absl::string_view what,
                             const Fingerprint& fp) {
  const int64_t h = fp.value();
  at::Tensor t = at::tensor(std::vector<int64_t>{h, -h}, at::kLong).to(impl.scalar_device());
  impl.Allreduce(t, c10d::ReduceOp::MAX);
  t = t.cpu();
  const int64_t max_h = t[0].item<int64_t>();
  const int64_t min_h = -t[1].item<int64_t>();
  if (max_h != h || min_h != h) {
    return absl::FailedPreconditionError(absl::StrCat(
        what,
        ": the ranks passed different tensor layouts (count, dtypes, sizes, bucket_bytes "
        "or root differ; ",
        impl.where(), ")"));
  }
  return absl::OkStatus();
}

// Applies `collective` to every bucket of `flats`; pack/unpack control the copies.
// `collective` receives a contiguous 1-D tensor (a view into a tensor when the bucket is a
// single segment, else a packed buffer).
template <class Collective>
void RunBuckets(Distributed::Impl& impl, const std::vector<at::Tensor>& flats, int64_t bucket_bytes,
                bool pack, bool unpack, Collective&& collective) {
  for (const Bucket& b : PlanBuckets(flats, bucket_bytes)) {
    if (b.segments.size() == 1) {
      const Segment& s = b.segments[0];
      at::Tensor view = flats[s.index].narrow(0, s.offset, s.length);
      collective(view);
      continue;
    }
    const at::Tensor& first = flats[b.segments[0].index];
    at::Tensor buf = impl.Scratch(first, b.numel);
    if (pack) {
      std::vector<at::Tensor> parts;
      parts.reserve(b.segments.size());
      for (const Segment& s : b.segments) {
        parts.push_back(flats[s.index].narrow(0, s.offset, s.length));
      }
      at::cat_out(buf, parts, 0);
    }
    collective(buf);
    if (unpack) {
      int64_t pos = 0;
      for (const Segment& s : b.segments) {
        flats[s.index].narrow(0, s.offset, s.length).copy_(buf.narrow(0, pos, s.length));
        pos += s.length;
      }
    }
  }
}

// Flat contiguous aliases of `tensors`; non-contiguous ones get a contiguous copy that is
// written back by WriteBack.
struct FlatViews {
  std::vector<at::Tensor> flats;
  std::vector<std::pair<at::Tensor, at::Tensor>> write_back;  // (original, contiguous copy)

  void Add(const at::Tensor& t) {
    at::Tensor d = t.detach();
    if (d.is_contiguous()) {
      flats.push_back(d.view({-1}));
    } else {
      at::Tensor c = d.contiguous();
      write_back.emplace_back(d, c);
      flats.push_back(c.view({-1}));
    }
  }
  void WriteBack() {
    for (auto& [orig, copy] : write_back) orig.copy_(copy);
  }
};

}  // namespace

absl::Status Distributed::AllreduceGradients(const std::vector<torch::Tensor>& params, double scale,
                                             int64_t bucket_bytes) {
  if (bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllreduceGradients: bucket_bytes must be positive, got ", bucket_bytes));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("AllreduceGradients: parameter ", i, " is an undefined tensor"));
    }
    if (params[i].grad().defined() && params[i].grad().is_sparse()) {
      return absl::InvalidArgumentError(
          absl::StrCat("AllreduceGradients: parameter ", i, " has a sparse gradient"));
    }
  }
  torch::NoGradGuard no_grad;
  if (impl_ == nullptr) {
    if (scale == 1.0) return absl::OkStatus();
    return Guarded("AllreduceGradients", env_.DebugString(), [&] {
      for (const at::Tensor& p : params) {
        if (p.grad().defined()) p.mutable_grad().mul_(scale);
      }
      return absl::OkStatus();
    });
  }
  return Guarded("AllreduceGradients", impl_->where(), [&]() -> absl::Status {
    FlatViews views;
    Fingerprint fp;
    fp.Add(int64_t{1});  // operation tag
    fp.Add(static_cast<int64_t>(params.size()));
    fp.Add(bucket_bytes);
    for (const at::Tensor& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p, at::MemoryFormat::Contiguous);
      const at::Tensor& g = p.grad();
      fp.AddTensor(g);
      views.Add(g);
    }
    if (check_layout_) {
      if (absl::Status s = CheckSameLayout(*impl_, "AllreduceGradients", fp); !s.ok()) return s;
    }
    RunBuckets(*impl_, views.flats, bucket_bytes, /*pack=*/true, /*unpack=*/true,
               [&](at::Tensor& bucket) {
                 impl_->Allreduce(bucket, c10d::ReduceOp::SUM);
                 if (scale != 1.0) bucket.mul_(scale);
               });
    views.WriteBack();
    return absl::OkStatus();
  });
}

absl::Status Distributed::BroadcastTensors(const std::vector<torch::Tensor>& tensors, int root,
                                           int64_t bucket_bytes) {
  if (root < 0 || root >= env_.world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BroadcastTensors: root %d is outside [0, %d)", root, env_.world_size));
  }
  if (bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BroadcastTensors: bucket_bytes must be positive, got ", bucket_bytes));
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BroadcastTensors: tensor ", i, " is undefined"));
    }
  }
  if (impl_ == nullptr) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  return Guarded("BroadcastTensors", impl_->where(), [&]() -> absl::Status {
    FlatViews views;
    Fingerprint fp;
    fp.Add(int64_t{2});
    fp.Add(static_cast<int64_t>(tensors.size()));
    fp.Add(bucket_bytes);
    fp.Add(root);
    for (const at::Tensor& t : tensors) {
      fp.AddTensor(t);
      views.Add(t);
    }
    if (check_layout_) {
      if (absl::Status s = CheckSameLayout(*impl_, "BroadcastTensors", fp); !s.ok()) return s;
    }
    const bool is_root = env_.rank == root;
    RunBuckets(*impl_, views.flats, bucket_bytes, /*pack=*/is_root, /*unpack=*/!is_root,
               [&](at::Tensor& bucket) { impl_->Broadcast(bucket, root); });
    if (!is_root) views.WriteBack();
    return absl::OkStatus();
  });
}

absl::StatusOr<double> Distributed::AllreduceScalar(double value, Op op) {
  absl::StatusOr<std::vector<double>> r = AllreduceScalars({value}, op);
  if (!r.ok()) return r.status();
  return (*r)[0];
}

absl::StatusOr<std::vector<double>> Distributed::AllreduceScalars(std::vector<double> values,
                                                                  Op op) {
  if (impl_ == nullptr || values.empty()) return values;
  absl::Status s = Guarded("AllreduceScalars", impl_->where(), [&]() -> absl::Status {
    at::Tensor t = at::tensor(values, at::kDouble).to(impl_->scalar_device());
    impl_->Allreduce(t, ToReduceOp(op));
    t = t.cpu().contiguous();
    const double* p = t.data_ptr<double>();
    values.assign(p, p + values.size());
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return values;
}

absl::Status Distributed::Barrier() {
  if (impl_ == nullptr) return absl::OkStatus();
  return Guarded("Barrier", impl_->where(), [&] {
    impl_->Barrier();
    return absl::OkStatus();
  });
}

}  // namespace nino::trainer
