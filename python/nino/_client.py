"""The Python side of the nino.v1 nowcaster protocol (rank 0 only).

Mirrors client/remote_nowcaster.cc (RemoteNowcaster) call for call:

* Replicas: `address` is one "host:port" or a comma-separated list of nowcaster replicas. An
  entry whose host is a DNS name (a Kubernetes headless Service) stands for every address it
  resolves to (`expand_replicas`, socket.getaddrinfo; C++ ExpandReplicas); IP literals stay as
  given. The job's replica order is fixed by rendezvous hashing of its job id over the expanded
  addresses (`order_replicas` / `replica_order`, identical to C++ ReplicaOrder, so a job id maps
  to the same replica from either client). The names are resolved again when every replica
  failed, and, at most every `re_resolve_interval` seconds, before the job registers (a
  registered job stays on its replica while that is listed). With TLS, the server certificate
  of an expanded address is checked against the name it came from. A replica that
  is unavailable or refuses the job for lack of memory (RESOURCE_EXHAUSTED) at registration sends
  the job to the next one (each replica tried at most once per call, within the deadline); a
  background upload or a NiNo step's PutState/Predict that finds the replica UNAVAILABLE moves
  the job to the next replica, where the NiNo step registers afresh and resends the context.

* The job is registered lazily (first upload or nowcast) or eagerly by `register()`; a failure is
  logged and counted and registration is tried again at the next use.
* `state_recorded()` queues a snapshot and returns at once; a worker thread streams it to the
  server (PutState) while training goes on. The queue holds at most ctx snapshots (the oldest is
  dropped and counted: the NiNo step resends what the server lacks).
* `nowcast()` waits (within its deadline) for pending uploads, uploads the context snapshots the
  server does not hold (always the newest one), calls Predict with a deadline and checks the
  prediction (chunk CRC-32C, indices, offsets, job, step, k, size, finite values). If the server
  lacks the context (restart, lost upload) the job is registered afresh, the whole context
  uploaded once and Predict retried once. Any other error or a timeout raises NowcastFailure.
"""

import collections
import logging
import socket
import sys
import threading
import time

import torch

from . import _crc32c
from .describe import description_to_proto

log = logging.getLogger("nino")

# A chunk plus its message header must fit in a stock gRPC message (4 MiB).
MAX_UPLOAD_CHUNK_BYTES = (4 << 20) - (64 << 10)
# HTTP/2 settings of proto/wire.h: a 1 MiB chunk travels as one frame, no window stalls.
_HTTP2_MAX_FRAME_BYTES = 4 << 20
_HTTP2_LOOKAHEAD_BYTES = 16 << 20

# Registration answers that say the job itself is wrong (not that the server is away), or that
# its credentials are (no bearer token, or one the server does not accept).
REFUSAL_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "UNIMPLEMENTED",
                           "UNAUTHENTICATED", "PERMISSION_DENIED"})
# The server no longer has what the call needs: register afresh and resend the context.
_RESEND_CODES = frozenset({"FAILED_PRECONDITION", "NOT_FOUND", "PERMISSION_DENIED"})
# The replica cannot take the job now (gone, or out of memory): registration tries the next one.
_FAILOVER_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})

_FNV64_OFFSET = 14695981039346656037
_FNV64_PRIME = 1099511628211
_MASK64 = (1 << 64) - 1
_ASCII_WHITESPACE = " \t\n\v\f\r"  # absl::StripAsciiWhitespace's set


def split_replicas(addresses):
    """The entries of the comma-separated `addresses`: spaces trimmed, empty entries dropped."""
    out = []
    for a in addresses.split(","):
        a = a.strip(_ASCII_WHITESPACE)
        if a:
            out.append(a)
    return out


def fnv1a64(data):
    """FNV-1a 64 of `data` (bytes): xor each byte, then multiply, modulo 2^64."""
    h = _FNV64_OFFSET
    for c in data:
        h = ((h ^ c) * _FNV64_PRIME) & _MASK64
    return h


def fmix64(k):
    """MurmurHash3's 64-bit finalizer: every input bit reaches every output bit."""
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    k ^= k >> 33
    return k


def replica_score(job_id, address):
    """fmix64(FNV-1a-64) of the UTF-8 bytes of "<job_id>|<address>"."""
    return fmix64(fnv1a64(("%s|%s" % (job_id, address)).encode("utf-8")))


def replica_order(job_id, addresses):
    """The replicas of the comma-separated `addresses` in the order job `job_id` tries them:
    descending replica_score, ties by address ascending (rendezvous hashing; identical to C++
    nino::client::ReplicaOrder). The finalizer spreads jobs evenly even over addresses that
    differ only in their last characters (sequential ports), which plain FNV-1a does not."""
    scored = [(replica_score(job_id, a), a)
              for a in split_replicas(addresses)]
    # Descending score, then ascending address (as bytes, like std::string's operator<).
    scored.sort(key=lambda sa: (-sa[0], sa[1].encode("utf-8")))
    return [a for _, a in scored]


# One replica to connect to: "ip:port", "[ipv6]:port" or an entry kept as given, and the DNS name
# it was resolved from ("" if given as is), which a TLS server certificate is checked against
# (C++ ReplicaAddress).
Replica = collections.namedtuple("Replica", ["address", "host_name"])


def order_replicas(job_id, replicas):
    """`replicas` (Replica tuples, already expanded) in the order job `job_id` tries them: by
    replica_score of each address, as replica_order (C++ ReplicaOrder over ReplicaAddress)."""
    return sorted(replicas,
                  key=lambda r: (-replica_score(job_id, r.address), r.address.encode("utf-8")))


def _split_host_port(entry):
    """"host:port" -> (host, port), "[v6]:port" without the brackets; None without a ":port" or
    a host (C++ SplitHostPort)."""
    colon = entry.rfind(":")
    if colon < 0 or colon + 1 == len(entry):
        return None
    host = entry[:colon]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host, entry[colon + 1:]) if host else None


def _is_ip_literal(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def resolve_host_system(host):
    """The numeric addresses of `host` (getaddrinfo, TCP, IPv4 and IPv6), duplicates removed,
    sorted (C++ ResolveHostSystem). Raises OSError (socket.gaierror) when it does not resolve."""
    infos = socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    numeric = sorted({info[4][0] for info in infos
                      if info[0] in (socket.AF_INET, socket.AF_INET6)})
    if not numeric:
        raise OSError("%s has no address" % host)
    return numeric


def has_host_names(addresses):
    """True when an entry of `addresses` has a DNS name as its host (expansion can change)."""
    for entry in split_replicas(addresses):
        hp = None if entry.startswith("unix:") else _split_host_port(entry)
        if hp is not None and not _is_ip_literal(hp[0]):
            return True
    return False


def expand_replicas(addresses, resolve=None):
    """The comma-separated `addresses` (empty entries dropped, spaces trimmed) as Replica tuples,
    every entry whose host is a DNS name replaced by "address:port" for each address
    `resolve(host)` gives (default resolve_host_system; IPv6 in brackets), in its order. An entry
    that does not resolve, has no ":port", or is "unix:PATH" is kept as given (gRPC reports its
    error on use). Duplicates are dropped. The same list as C++ ExpandReplicas (which would also
    look up a host named "unix": the result is the same unless one exists)."""
    resolve = resolve or resolve_host_system
    out = []

    def add(replica):
        if replica not in out:
            out.append(replica)

    for entry in split_replicas(addresses):
        hp = None if entry.startswith("unix:") else _split_host_port(entry)
        if hp is None or _is_ip_literal(hp[0]):
            add(Replica(entry, ""))
            continue
        host, port = hp
        try:
            ips = list(resolve(host))
        except (OSError, UnicodeError, ValueError):  # gaierror; IDNA cannot encode the name
            ips = []
        if not ips:
            add(Replica(entry, ""))
            continue
        for ip in ips:
            add(Replica(("[%s]:%s" if ":" in ip else "%s:%s") % (ip, port), host))
    return out

if sys.byteorder != "little":  # the wire format is little-endian float32
    raise ImportError("nino: the nowcaster wire format needs a little-endian machine")


def load_stubs():
    """The generated nino.v1 modules; ImportError saying how to get them if they are missing."""
    try:
        import grpc  # noqa: F401  python3-grpcio
        from .v1 import nowcaster_pb2, nowcaster_pb2_grpc
    except ImportError as e:
        raise ImportError(
            "nino: the gRPC stubs of proto/nino/v1/nowcaster.proto are not importable (%s). "
            "Install the package with tools/setup.sh (Debian: python3-grpcio, python3-protobuf, "
            "protobuf-compiler-grpc), or for a source checkout: bazel build "
            "//python:nowcaster_py_stubs and PYTHONPATH=python:bazel-bin/python" % e) from e
    return nowcaster_pb2, nowcaster_pb2_grpc


class NowcastFailure(Exception):
    """A failed RPC or a rejected answer: `code` is a gRPC status code name."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def _from_grpc(err, what):
    code = err.code() if hasattr(err, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = err.details() if hasattr(err, "details") else str(err)
    return NowcastFailure(name, "%s: %s" % (what, details))


class PredictionAssembler:
    """Validates one PredictionChunk stream and writes it into a float32 buffer of num_params.

    The first chunk fixes job_id, step and k; every chunk must carry them unchanged, total_bytes
    equal to 4 * num_params, chunk_index 0, 1, 2, ... in order, offset_bytes equal to the bytes
    received so far, 1.. bytes of data that do not run past total_bytes, and the CRC-32C of its
    data (as proto/wire.h's ChunkAssembler). A violation raises NowcastFailure
    (INVALID_ARGUMENT, DATA_LOSS for a checksum mismatch); rejected bytes are never written.
    """

    def __init__(self, num_params, out=None):
        """out: an optional float32 CPU contiguous tensor of num_params values to assemble into
        (reused across predictions: no fresh pages to fault in for every prediction)."""
        self.total = 4 * num_params
        if out is None:
            out = torch.empty(num_params, dtype=torch.float32)
        if (out.dtype != torch.float32 or out.device.type != "cpu" or
                not out.is_contiguous() or out.numel() != num_params):
            raise ValueError("out must be a contiguous float32 CPU tensor of %d values" %
                             num_params)
        self.out = out
        self.buf = memoryview(out.numpy()).cast("B")
        self.received = 0
        self.next_index = 0
        self.job_id = None
        self.step = None
        self.k = None
        self.nowcast_seconds = 0.0

    def add(self, chunk):
        i = self.next_index
        if chunk.chunk_index != i:
            raise NowcastFailure("INVALID_ARGUMENT",
                                 "chunk %d: chunk_index %d, expected %d" % (i, chunk.chunk_index, i))
        if i == 0:
            self.job_id, self.step, self.k = chunk.job_id, chunk.step, chunk.k
            self.nowcast_seconds = chunk.nowcast_seconds
        elif (chunk.job_id, chunk.step, chunk.k) != (self.job_id, self.step, self.k):
            raise NowcastFailure(
                "INVALID_ARGUMENT", "chunk %d: job/step/k (%s, %d, %d) differ from the stream's "
                "(%s, %d, %d)" % (i, chunk.job_id, chunk.step, chunk.k, self.job_id, self.step,
                                  self.k))
        if chunk.total_bytes != self.total:
            raise NowcastFailure("INVALID_ARGUMENT", "chunk %d: total_bytes %d, expected %d" %
                                 (i, chunk.total_bytes, self.total))
        if self.received == self.total:
            raise NowcastFailure("INVALID_ARGUMENT", "chunk %d: arrived after all %d bytes" %
                                 (i, self.total))
        if chunk.offset_bytes != self.received:
            raise NowcastFailure("INVALID_ARGUMENT", "chunk %d: offset_bytes %d, expected %d" %
                                 (i, chunk.offset_bytes, self.received))
        data = chunk.data
        size = len(data)
        if size < 1:
            raise NowcastFailure("INVALID_ARGUMENT", "chunk %d: empty data" % i)
        if size > self.total - self.received:
            raise NowcastFailure("INVALID_ARGUMENT", "chunk %d: data [%d, %d) runs past "
                                 "total_bytes %d" % (i, self.received, self.received + size,
                                                     self.total))
        crc = _crc32c.crc32c(data)
        if crc != chunk.crc32c:
            raise NowcastFailure("DATA_LOSS", "chunk %d: crc32c mismatch (chunk says 0x%08x, data "
                                 "has 0x%08x)" % (i, chunk.crc32c, crc))
        self.buf[self.received:self.received + size] = data
        self.received += size
        self.next_index += 1

    def finish(self):
        """The assembled float32 vector [P] (CPU); DATA_LOSS if bytes are missing."""
        if self.received != self.total:
            raise NowcastFailure("DATA_LOSS", "stream ended after %d of %d bytes" %
                                 (self.received, self.total))
        return self.out


def _read_file(what, path, kind=None):
    """The bytes of `path` (a TLS or token file); ValueError naming `what` and the path (never
    the contents) when it cannot be read, is empty or is not PEM of `kind`."""
    try:
        with open(path, "rb") as f:
            data = f.read((1 << 20) + 1)
    except OSError as e:
        raise ValueError("%s=%s: cannot read the file (%s)" % (what, path, e.strerror)) from None
    if not data.strip():
        raise ValueError("%s=%s: empty" % (what, path))
    if kind is not None and (b"-----BEGIN " not in data or kind.encode() not in data):
        raise ValueError("%s=%s: not a PEM file holding a %s" % (what, path, kind))
    return data


class ChannelSecurity:
    """TLS and the bearer token of a client, files read once (C++ ChannelSecurity).

    tls_ca_file: PEM CA bundle that verifies the server; given, the channel uses TLS.
    tls_cert_file / tls_key_file: client certificate and key (mutual TLS), both or neither.
    tls_server_name: the name the server certificate must carry instead of the address's host.
    auth_token_file: its first line is sent as "authorization: Bearer <token>" on every call.
    """

    def __init__(self, tls_ca_file=None, tls_cert_file=None, tls_key_file=None,
                 tls_server_name=None, auth_token_file=None):
        if bool(tls_cert_file) != bool(tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file: both or neither")
        if (tls_cert_file or tls_server_name) and not tls_ca_file:
            raise ValueError("tls_cert_file / tls_server_name need tls_ca_file (the CA that "
                             "verifies the server)")
        self.tls = bool(tls_ca_file)
        self._ca = _read_file("tls_ca_file", tls_ca_file, "CERTIFICATE") if self.tls else None
        self._cert = self._key = None
        if tls_cert_file:
            self._cert = _read_file("tls_cert_file", tls_cert_file, "CERTIFICATE")
            self._key = _read_file("tls_key_file", tls_key_file, "PRIVATE KEY")
        self._server_name = tls_server_name
        self.metadata = ()
        if auth_token_file:
            line = _read_file("auth_token_file", auth_token_file).decode("utf-8", "replace")
            token = line.splitlines()[0].strip() if line.strip() else ""
            if not token or any(c.isspace() for c in token):
                raise ValueError("auth_token_file=%s: the first line must hold one token" %
                                 auth_token_file)
            self.metadata = (("authorization", "Bearer " + token),)

    def channel(self, grpc, address, options, host_name=""):
        """A channel to `address` with these credentials. `host_name`: the DNS name the address
        was resolved from ("" for an address given as is). With TLS, the name checked against the
        server certificate is tls_server_name, else `host_name`, else the address's own host."""
        if not self.tls:
            return grpc.insecure_channel(address, options=options)
        creds = grpc.ssl_channel_credentials(root_certificates=self._ca,
                                             private_key=self._key,
                                             certificate_chain=self._cert)
        name = self._server_name or host_name
        if name:
            options = list(options) + [("grpc.ssl_target_name_override", name)]
        return grpc.secure_channel(address, creds, options=options)


class RemoteNowcaster:
    """One job on a nino_nowcaster. Thread-safe; `close()` ends it.

    params: [(name, shape tuple, ParamInfo dtype value)] in named_parameters order.
    timeout: seconds for a whole nowcast (uploads included); rpc_timeout: registration and each
    background upload. security: a ChannelSecurity (TLS, bearer token); None: plaintext.
    resolver: host name -> numeric addresses (default resolve_host_system); re_resolve_interval:
    seconds between resolutions of the names in `address` before a registration.
    description: a model description (JSON form, nino.describe_model): the job registers with
    graph kind "described"; None: kind "auto" (the server maps the parameter names), with
    heads = (num_heads, num_kv_heads) for GPT-2 and Llama names.
    """

    def __init__(self, address, job_id, params, nino_model, period, ctx, max_train_steps,
                 k_decay, lpe_seed, timeout, rpc_timeout=30.0, security=None, resolver=None,
                 re_resolve_interval=30.0, description=None, heads=(0, 0)):
        import grpc

        self._security = security or ChannelSecurity()
        self._md = self._security.metadata

        self._pb2, self._pb2_grpc = load_stubs()
        self._grpc = grpc
        self._address_spec = address
        self._resolver = resolver or resolve_host_system
        self._re_resolve_interval = float(re_resolve_interval)
        self._has_host_names = has_host_names(address)
        self._token = ""
        self._held = set()  # steps of snapshots the server got from us
        self._channel = None
        # The job's rendezvous order over the expanded addresses (fixed by the first job id, as
        # in C++); self._current is the replica the job is on (one attribute: read without lock).
        self._replica_list = []
        self._replica = 0  # index in self._replica_list of self._current
        self._current = None
        self._next_resolve = 0.0
        self._base_job_id = job_id
        self._params = params
        self._description = description
        self._heads = heads
        self._num_params = sum(_numel(shape) for _, shape, _ in params)
        self._nino_model = nino_model
        self._period, self._ctx = period, ctx
        self._max_train_steps, self._k_decay, self._lpe_seed = max_train_steps, k_decay, lpe_seed
        self._timeout = timeout
        self._rpc_timeout = rpc_timeout
        self._resolve_locked()

        self._cv = threading.Condition()  # guards the queue fields
        self._queue = collections.deque()  # (step, flat float32 CPU tensor), at most ctx
        self._busy = False
        self._stop = False
        self._dropped = 0

        self._rpc = threading.Lock()  # guards everything below (one RPC sequence at a time)
        self._incarnation = 0
        self._job_id = job_id
        self._max_chunk_bytes = MAX_UPLOAD_CHUNK_BYTES
        self.server_k_schedule = None
        self.last_nowcast_seconds = 0.0
        self.last_predict_timing = (0.0, 0.0)
        # Where predictions are assembled, reused: the caller copies a prediction into the
        # parameters before the next nowcast.
        self._pred_buf = None
        # Every key exists from the start: stats() copies the dict without the RPC lock (an
        # upload may hold that for rpc_timeout) and the copy never sees the dict grow.
        self._stats = dict.fromkeys(("registrations", "register_failures", "uploads",
                                     "upload_failures", "predictions", "prediction_failures",
                                     "context_resends", "failovers"), 0)
        self._failures_without_lock = 0
        self._closed = False

        self._worker = threading.Thread(target=self._upload_loop, name="nino-upload", daemon=True)
        self._worker.start()

    # ----- public -----

    @property
    def job_id(self):
        return self._job_id  # one attribute read: no lock (an upload may hold the RPC lock)

    @property
    def address(self):
        """The replica the job is on (or will register with next)."""
        return self._current.address  # no lock: one attribute read

    @property
    def replicas(self):
        """The replica addresses in the job's rendezvous order (the last resolution)."""
        return [r.address for r in self._replica_list]  # no lock: one attribute read

    def stats(self):
        """Counters; never blocks on an RPC in flight."""
        s = dict(self._stats)
        with self._cv:
            s["uploads_dropped"] = self._dropped
            s["prediction_failures"] += self._failures_without_lock
        return s

    def register(self, timeout):
        """Registers now (if not yet registered); raises NowcastFailure."""
        deadline = time.monotonic() + timeout
        if not self._rpc.acquire(timeout=timeout):
            raise NowcastFailure("DEADLINE_EXCEEDED", "RegisterJob: the client is busy")
        try:
            self._ensure_registered(deadline)
        finally:
            self._rpc.release()

    def state_recorded(self, step, flat):
        """Queues snapshot `flat` ([P] float32 CPU, never modified afterwards) of call `step`."""
        with self._cv:
            self._queue.append((step, flat))
            # Never hold more than a NiNo step's worth; nowcast() resends what is missing.
            while len(self._queue) > self._ctx:
                self._queue.popleft()
                self._dropped += 1
            self._cv.notify_all()

    def restart_job(self):
        """Forgets the job (closing it on the server, best effort) and pending uploads: the next
        call registers a fresh job (after a resume from a checkpoint)."""
        with self._cv:
            self._queue.clear()
            self._cv.wait_for(lambda: not self._busy, timeout=self._rpc_timeout)
        with self._rpc:
            self._close_job_locked(time.monotonic() + 2.0)
            self._incarnation += 1
            self._job_id = "%s-r%d" % (self._base_job_id, self._incarnation)

    def idle(self):
        """True when no snapshot is queued or being uploaded."""
        with self._cv:
            return not self._queue and not self._busy

    def nowcast(self, states, k, step):
        """states: ctx flat [P] float32 CPU tensors (oldest first) of the NiNo step at call
        index `step`. Returns the predicted [P] float32 CPU tensor, valid until the next
        nowcast (its buffer is reused); raises NowcastFailure."""
        deadline = time.monotonic() + self._timeout
        if len(states) != self._ctx or any(s.numel() != self._num_params for s in states):
            raise NowcastFailure("INVALID_ARGUMENT", "states must be %d snapshots of %d values, "
                                 "got %s" % (self._ctx, self._num_params,
                                             [s.numel() for s in states]))
        with self._cv:  # background uploads first (they hold earlier snapshots of this context)
            drained = self._cv.wait_for(lambda: not self._queue and not self._busy,
                                        timeout=max(0.0, deadline - time.monotonic()))
            if not drained:
                self._failures_without_lock += 1
        if not drained:
            raise NowcastFailure("DEADLINE_EXCEEDED",
                                 "pending snapshot uploads did not finish in time")
        if not self._rpc.acquire(timeout=max(0.0, deadline - time.monotonic())):
            with self._cv:
                self._failures_without_lock += 1
            raise NowcastFailure("DEADLINE_EXCEEDED", "an upload still holds the connection")
        try:
            try:
                pred = self._nowcast_locked(states, k, step, deadline)
            except NowcastFailure:
                self._stats["prediction_failures"] += 1
                raise
            except Exception as e:  # never let a client bug stop training
                self._stats["prediction_failures"] += 1
                raise NowcastFailure("INTERNAL", "%s: %s" % (type(e).__name__, e)) from e
            self._stats["predictions"] += 1
            return pred
        finally:
            self._rpc.release()

    def close(self):
        """Stops the upload thread and closes the job (best effort, short deadline)."""
        if self._closed:
            return
        self._closed = True
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._worker.join(timeout=self._rpc_timeout + 1.0)
        if self._rpc.acquire(timeout=5.0):
            try:
                self._close_job_locked(time.monotonic() + 2.0)
            finally:
                self._rpc.release()
        self._channel.close()

    # ----- internals -----

    def _remaining(self, deadline):
        return max(0.001, deadline - time.monotonic())

    def _resolve_locked(self):
        """Expands and orders the replicas again (C++ ResolveLocked). The job stays on its
        replica while that is still listed; otherwise it goes to the first of the new order and
        registers there afresh."""
        fresh = order_replicas(self._base_job_id,
                               expand_replicas(self._address_spec, self._resolver))
        if not fresh:  # nothing parses as a list: the address as it is
            fresh = [Replica(self._address_spec, "")]
        self._next_resolve = time.monotonic() + self._re_resolve_interval
        if self._replica_list and fresh == self._replica_list:
            return
        first = not self._replica_list
        current = None if first else self._current.address
        self._replica_list = fresh
        if not first:
            log.info("nowcaster client: %s now names %d replicas", self._address_spec,
                     len(fresh))
        for i, r in enumerate(fresh):
            if r.address == current:
                self._replica, self._current = i, r  # the job stays on its replica
                return
        self._replica, self._current = 0, fresh[0]
        self._token = ""  # the job's replica is gone: register on the first of the new order
        self._held.clear()
        self._connect_locked()

    def _maybe_resolve_locked(self, force):
        """_resolve_locked when the address names hosts and (`force`, or the interval passed and
        the job is not registered)."""
        if not self._has_host_names:
            return
        if force or (not self._token and time.monotonic() >= self._next_resolve):
            self._resolve_locked()

    def _connect_locked(self):
        """A channel to self.address (the current replica); the previous one is closed."""
        old = self._channel
        self._channel = self._security.channel(self._grpc, self._current.address, [
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20),
            ("grpc.http2.max_frame_size", _HTTP2_MAX_FRAME_BYTES),
            ("grpc.http2.lookahead_bytes", _HTTP2_LOOKAHEAD_BYTES),
            # A restarted server is found again within seconds, not after gRPC's default
            # backoff of up to two minutes (a NiNo step would fail meanwhile).
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ], host_name=self._current.host_name)
        self._stub = self._pb2_grpc.NowcasterStub(self._channel)
        if old is not None:
            old.close()

    def _fail_over_locked(self, why, tries):
        """Moves the job to the next replica (forgetting its registration there); False when
        there is only one replica or `tries` replicas were already tried (C++ FailOverLocked);
        then the names are resolved again (they may name other replicas now)."""
        n = len(self._replica_list)
        if n <= 1 or tries >= n:
            self._maybe_resolve_locked(force=True)
            return False
        src = self.address
        self._replica = (self._replica + 1) % n
        self._current = self._replica_list[self._replica]
        self._token = ""
        self._held.clear()
        self._connect_locked()
        self._stats["failovers"] += 1
        log.warning("nowcaster client: job %s moves from replica %s to %s (%s; %d failovers so "
                    "far)", self._job_id, src, self.address, why, self._stats["failovers"])
        return True

    def _upload_loop(self):
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or self._queue)
                if self._stop:
                    return
                step, flat = self._queue.popleft()
                self._busy = True
            try:
                with self._rpc:
                    deadline = time.monotonic() + self._rpc_timeout
                    try:
                        self._ensure_registered(deadline)
                        self._upload(step, flat, deadline)
                    except Exception as e:  # noqa: BLE001  logged and counted; resent later
                        if isinstance(e, NowcastFailure) and e.code == "UNAVAILABLE":
                            self._fail_over_locked(e, 1)
                        self._stats["upload_failures"] += 1
                        log.warning("nowcaster client: upload of the snapshot of step %d failed "
                                    "(%d so far; the NiNo step resends it): %s", step,
                                    self._stats["upload_failures"], e)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _ensure_registered(self, deadline):
        """Registers the job unless it is registered; an unavailable replica or one without
        memory for it sends it to the next one (each tried once, within the deadline)."""
        if self._token:
            return
        self._maybe_resolve_locked(force=False)
        tries = 1
        while True:
            try:
                self._register_once(deadline)
                return
            except NowcastFailure as err:
                if (err.code not in _FAILOVER_CODES or time.monotonic() >= deadline or
                        not self._fail_over_locked(err, tries)):
                    raise
                tries += 1

    def _register_once(self, deadline):
        pb2 = self._pb2
        req = pb2.RegisterJobRequest(
            job_id=self._job_id, nino_model=self._nino_model, period=self._period, ctx=self._ctx,
            max_train_steps=self._max_train_steps, k_decay=self._k_decay,
            lpe_seed=self._lpe_seed)
        for name, shape, dtype in self._params:
            req.params.add(name=name, shape=list(shape), dtype=dtype)
        if self._description is not None:
            req.graph.kind = "described"
            description_to_proto(self._description, req.graph.description)
        else:
            req.graph.kind = "auto"  # the server infers generic / gpt2 / llama from the names
            req.graph.num_heads, req.graph.num_kv_heads = self._heads
        try:
            resp = self._stub.RegisterJob(
                req, timeout=min(self._remaining(deadline), self._rpc_timeout), metadata=self._md)
            if resp.num_params != self._num_params:
                raise NowcastFailure("INTERNAL", "RegisterJob: the server counts %d parameters, "
                                     "the client %d" % (resp.num_params, self._num_params))
            if not resp.job_token:
                raise NowcastFailure("INTERNAL", "RegisterJob: empty job_token")
        except self._grpc.RpcError as e:
            self._stats["register_failures"] += 1
            err = _from_grpc(e, "RegisterJob %s at %s" % (self._job_id, self.address))
            log.warning("nowcaster client: registration failed (%d so far): %s",
                        self._stats["register_failures"], err)
            raise err from None
        except NowcastFailure as err:
            self._stats["register_failures"] += 1
            log.warning("nowcaster client: registration failed (%d so far): %s",
                        self._stats["register_failures"], err)
            raise
        self._token = resp.job_token
        self._max_chunk_bytes = MAX_UPLOAD_CHUNK_BYTES
        if resp.max_chunk_bytes > 0:
            self._max_chunk_bytes = min(self._max_chunk_bytes, resp.max_chunk_bytes)
        self._held.clear()
        self.server_k_schedule = list(resp.k_schedule)
        self._stats["registrations"] += 1
        graph = ("%d nodes / %d edges" % (resp.num_nodes, resp.num_edges) if resp.graph_ready
                 else "being built on the server")
        log.info("nowcaster client: registered job %s at %s (%d parameters, graph %s, model %s)",
                 self._job_id, self.address, resp.num_params, graph, self._nino_model)

    def _upload(self, step, flat, deadline):
        flat = flat.reshape(-1).to("cpu", torch.float32).contiguous()
        if flat.numel() != self._num_params:
            raise NowcastFailure("INVALID_ARGUMENT", "snapshot of step %d has %d values, expected "
                                 "%d" % (step, flat.numel(), self._num_params))
        payload = memoryview(flat.numpy()).cast("B")
        total = len(payload)
        job_id, token, max_chunk = self._job_id, self._token, self._max_chunk_bytes
        make = self._pb2.StateChunk

        def chunks():  # one chunk message at a time: never a second copy of the whole vector
            for index, offset in enumerate(range(0, total, max_chunk)):
                data = bytes(payload[offset:offset + max_chunk])
                yield make(job_id=job_id, job_token=token, step=step, chunk_index=index,
                           offset_bytes=offset, total_bytes=total, data=data,
                           crc32c=_crc32c.crc32c(data))

        try:
            resp = self._stub.PutState(chunks(), timeout=self._remaining(deadline),
                                       metadata=self._md)
        except self._grpc.RpcError as e:
            err = _from_grpc(e, "PutState step %d" % step)
            if err.code in ("NOT_FOUND", "PERMISSION_DENIED"):
                self._token = ""  # the server forgot the job (restart): register again next time
            raise err from None
        if resp.step != step or resp.bytes_received != total:
            raise NowcastFailure("INTERNAL", "PutState step %d: the server acknowledged step %d, "
                                 "%d bytes" % (step, resp.step, resp.bytes_received))
        self._held.add(step)
        self._stats["uploads"] += 1

    def _predict(self, step, k, deadline):
        req = self._pb2.PredictRequest(job_id=self._job_id, job_token=self._token, step=step, k=k)
        if self._pred_buf is None:
            self._pred_buf = torch.empty(self._num_params, dtype=torch.float32)
        assembler = PredictionAssembler(self._num_params, self._pred_buf)
        t_start = time.monotonic()
        t_first = None
        call = self._stub.Predict(req, timeout=self._remaining(deadline), metadata=self._md)
        try:
            for chunk in call:
                if t_first is None:
                    t_first = time.monotonic()
                assembler.add(chunk)
        except NowcastFailure as e:
            call.cancel()
            raise NowcastFailure(e.code, "Predict step %d: %s" % (step, e.message)) from None
        except self._grpc.RpcError as e:
            raise _from_grpc(e, "Predict step %d" % step) from None
        try:
            out = assembler.finish()
        except NowcastFailure as e:
            raise NowcastFailure(e.code, "Predict step %d: %s" % (step, e.message)) from None
        if (assembler.job_id, assembler.step, assembler.k) != (self._job_id, step, k):
            raise NowcastFailure("INTERNAL", "Predict: the server answered job %s step %d k %d for "
                                 "job %s step %d k %d" % (assembler.job_id, assembler.step,
                                                          assembler.k, self._job_id, step, k))
        if not _all_finite(out):
            raise NowcastFailure("INTERNAL", "Predict: the prediction holds NaN or Inf values")
        self._held.clear()  # the server drops the snapshots a delivered prediction used
        self.last_nowcast_seconds = assembler.nowcast_seconds  # the server's compute time
        # (seconds to the first chunk, seconds from the first chunk to the checked result)
        self.last_predict_timing = (t_first - t_start, time.monotonic() - t_first)
        return out

    def _close_job_locked(self, deadline):
        if self._token:
            try:
                self._stub.CloseJob(self._pb2.JobRef(job_id=self._job_id, job_token=self._token),
                                    timeout=self._remaining(deadline), metadata=self._md)
            except self._grpc.RpcError:
                pass  # best effort: the server may be gone
        self._token = ""
        self._held.clear()

    def _fail_over_on(self, err):
        """A replica that went away mid-call: the job moves to the next one (then the caller
        registers there afresh and resends the context)."""
        return err.code == "UNAVAILABLE" and self._fail_over_locked(err, 1)

    def _nowcast_locked(self, states, k, step, deadline):
        interval = self._period // self._ctx

        def state_step(i):
            return step - (self._ctx - 1 - i) * interval

        err = None
        try:
            self._ensure_registered(deadline)
            # Send what the server lacks (always the newest snapshot, recorded in this very
            # call), as long as it comes after everything it holds (it takes them in step order).
            for i in range(self._ctx):
                st = state_step(i)
                if st in self._held or st < 0:
                    continue
                if self._held and st <= max(self._held):
                    continue
                self._upload(st, states[i], deadline)
        except NowcastFailure as e:
            err = e
            if not (err.code in _RESEND_CODES or err.code == "INVALID_ARGUMENT" or
                    self._fail_over_on(err)):
                raise
        if err is None:
            try:
                return self._predict(step, k, deadline)
            except NowcastFailure as e:
                if not (e.code in _RESEND_CODES or self._fail_over_on(e)):
                    raise
                err = e
        if time.monotonic() >= deadline:
            raise err
        # The server lacks the context: a fresh job, the whole context uploaded now, one retry.
        self._stats["context_resends"] += 1
        log.warning("nowcaster client: the server lacks the context of step %d (%s); registering "
                    "afresh at %s and resending %d snapshots", step, err, self.address, self._ctx)
        self._close_job_locked(min(deadline, time.monotonic() + 2.0))
        self._incarnation += 1
        self._job_id = "%s-r%d" % (self._base_job_id, self._incarnation)
        self._ensure_registered(deadline)
        for i in range(self._ctx):
            if state_step(i) < 0:
                raise NowcastFailure("FAILED_PRECONDITION", "context before step 0")
            self._upload(state_step(i), states[i], deadline)
        return self._predict(step, k, deadline)


def _all_finite(t):
    """True if every value of float tensor t is finite. A finite sum (no temporary [P] mask)
    proves it; an infinite sum may be an overflow of finite values, so then every value is
    checked."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n
