"""NowcastOptimizer: any torch.optim optimizer with NiNo steps served by a nino_nowcaster.

The step rule is common/nino/nino_optimizer.cc's (NINO_SPEC.md 5.2): the optimizer counts its
step() calls (0-based call index); when (index + 1) % (period // ctx) == 0 the current
parameters (before that call's update) are recorded as a flat float32 snapshot; when ctx
snapshots are held, that call is a NiNo step instead of a base optimizer step: the nowcaster
predicts the parameters k states ahead (k from the horizon schedule), they replace the
parameters, and the snapshots are cleared. The base optimizer's state is left as it is. A NiNo
step that fails (server down, slow, wrong answer) is an ordinary base step, logged and counted.
"""

import dataclasses
import itertools
import logging
import os
import re
import socket
import time
import weakref

import torch

from . import _client
from .describe import check_description, describe_model, normalize_description
from .schedule import horizon_at, horizon_schedule

log = logging.getLogger("nino")

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,110}$")  # the server takes 128; "-rN" is appended
_STATE_VERSION = 1
_job_counter = itertools.count()


@dataclasses.dataclass
class StepOutcome:
    """What one step() call did (`NowcastOptimizer.last_outcome`)."""
    step_idx: int = 0              # index of the call (0-based)
    state_recorded: bool = False   # a snapshot was recorded in this call
    nino_step: bool = False        # this call was a NiNo step
    applied: bool = False          # the prediction replaced the parameters
    k: int = 0
    nowcast_seconds: float = 0.0
    error: str = ""                # why a NiNo step was not applied


class NowcasterRefused(RuntimeError):
    """The nowcaster refused the job at registration (e.g. a model NiNo cannot map)."""


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, got %s" % (name, type(value).__name__))
    if value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return value


def _check_address(address):
    """`address`: one "host:port" (or "unix:PATH") or a comma-separated list of them (replicas;
    spaces trimmed, empty entries dropped). Returns the list of replicas."""
    if not isinstance(address, str):
        raise TypeError("nowcaster must be a 'host:port' string, got %s" % type(address).__name__)
    replicas = _client.split_replicas(address)
    if len(replicas) == 1 and replicas[0] == address:
        return [_check_one_address(address)]
    if not replicas:
        raise ValueError("nowcaster must be 'host:port' (port 1..65535), 'unix:PATH' or a "
                         "comma-separated list of them, got %r" % address)
    for a in replicas:
        try:
            _check_one_address(a)
        except ValueError:
            raise ValueError("nowcaster: replica %r of %r is not 'host:port' (port 1..65535) or "
                             "'unix:PATH'" % (a, address)) from None
    if len(set(replicas)) != len(replicas):
        raise ValueError("nowcaster lists a replica twice: %r" % address)
    return replicas


def _check_one_address(address):
    if address.startswith("unix:") and len(address) > len("unix:"):
        return address
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or " " in host:
        raise ValueError("nowcaster must be 'host:port' (port 1..65535) or 'unix:PATH', got %r"
                         % address)
    return address


def _default_job_id():
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:40] or "host"
    return "%s-p%d-t%d-%d" % (host, os.getpid(), int(time.time()), next(_job_counter))


def _sharded_reason(module):
    """Why the module's parameters are sharded (None if they are not)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except Exception:  # noqa: BLE001  builds without torch.distributed
        FullyShardedDataParallel = None
    for name, m in module.named_modules():
        if FullyShardedDataParallel is not None and isinstance(m, FullyShardedDataParallel):
            return "FullyShardedDataParallel (%s)" % (name or "the model")
    sharded_types = []
    for mod, attr in (("torch.distributed.tensor", "DTensor"),
                      ("torch.distributed._tensor", "DTensor"),
                      ("torch.distributed._shard.sharded_tensor", "ShardedTensor")):
        try:
            sharded_types.append(getattr(__import__(mod, fromlist=[attr]), attr))
        except Exception:  # noqa: BLE001  not in this torch
            pass
    for name, p in module.named_parameters():
        for t in sharded_types:
            if isinstance(p, t) or isinstance(getattr(p, "data", None), t):
                return "parameter %s is a %s" % (name, t.__name__)
        if "_fsdp_wrapped_module" in name or "flat_param" in name:
            return "parameter %s belongs to an FSDP flat parameter" % name
    return None


def _unwrap(model):
    """The module whose named_parameters() name the parameters (DDP/DataParallel unwrapped)."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def _dtype_enum(pb2, dtype):
    if dtype == torch.float16:
        return pb2.DTYPE_FLOAT16
    if dtype == torch.bfloat16:
        return pb2.DTYPE_BFLOAT16
    return pb2.DTYPE_FLOAT32  # float32, float64 (snapshots travel as float32 anyway)


class NowcastOptimizer(torch.optim.Optimizer):
    """Wraps `optimizer` (any torch.optim.Optimizer over `model`'s parameters) with NiNo steps
    served by the nino_nowcaster at `nowcaster` ("host:port", or a comma-separated list of
    replicas "host1:port,host2:port,...": the job goes to the first of them in its rendezvous
    order, and on to the next one when that one is unavailable or has no memory for it).

    Args:
      period: optimizer calls between NiNo steps (1000); a multiple of ctx.
      ctx: snapshots per NiNo step, period // ctx calls apart (5).
      max_train_steps: length of the run; sets the horizon schedule (as the C++ trainer).
      k_decay: exponent p of the schedule (2.0).
      nino_model: a model name the server serves ("": the server's default model).
      seed: the Laplacian positional-encoding sign seed (RegisterJob lpe_seed): the same seed
        gives the same predictions as an in-process C++ run or nino_nowcast --lpe_seed.
      timeout: seconds a NiNo step may take (uploads included) before it falls back.
      on_error: "raise" (a job the server refuses raises NowcasterRefused at construction) or
        "fallback" (then only the base optimizer runs, with a warning).
      job_id: the job's name on the server (default: host, pid, time); [A-Za-z0-9._:/-].
      tls_ca_file: PEM CA bundle that verifies the nowcaster's certificate; given, the
        connection uses TLS (grpc.ssl_channel_credentials). tls_cert_file / tls_key_file: a
        client certificate and key for a nowcaster with --tls_client_ca (mutual TLS).
        tls_server_name: the name the certificate must carry, if not the address's host.
      auth_token_file: a file whose first line is this job's bearer token (a nowcaster with
        --auth_tokens_file); sent as "authorization: Bearer <token>" with every call.
      example_input: an input of the model (e.g. one batch; a tuple for several inputs): the
        model is traced with it (nino.describe_model) and the job registers with its model
        description (graph kind "described"), so that CNNs with flatten and pooling, residual
        blocks and concatenations, and transformers (nn.Embedding, class tokens, positions,
        nn.MultiheadAttention) get the right NiNo graph. ValueError if the model cannot be
        described. None: the server maps the parameter names (strict chains, GPT-2, Llama).
      model_description: a model description given explicitly instead (the JSON form as a
        dict, or JSON text; docs/GRAPH_DESCRIPTION.md), checked against the parameters.
        nino.describe_llama(model, num_heads, num_kv_heads) writes one for a Hugging Face Llama
        with its real connectivity (grouped-query attention, gated MLP).
      num_heads, num_kv_heads: the attention heads (and key / value heads, 0 = num_heads) of a
        model whose parameter names the server maps to the official GPT-2 or Llama graph (graph
        kind "auto": HF GPT2LMHeadModel / LlamaForCausalLM names); without them such a model is
        refused. Not with a description, which says its heads itself.

    With torch.distributed initialised every rank constructs it alike; rank 0 talks to the
    nowcaster and the prediction is broadcast, so every rank applies it or every rank falls back.
    """

    def __init__(self, optimizer, model, nowcaster, period=1000, ctx=5, max_train_steps=10000,
                 k_decay=2.0, nino_model="", seed=0, timeout=60.0, on_error="raise",
                 job_id=None, tls_ca_file=None, tls_cert_file=None, tls_key_file=None,
                 tls_server_name=None, auth_token_file=None, example_input=None,
                 model_description=None, num_heads=0, num_kv_heads=0):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError("optimizer must be a torch.optim.Optimizer, got %s" %
                            type(optimizer).__name__)
        if isinstance(optimizer, NowcastOptimizer):
            raise TypeError("optimizer is already a NowcastOptimizer")
        if not isinstance(model, torch.nn.Module):
            raise TypeError("model must be a torch.nn.Module, got %s" % type(model).__name__)
        _check_address(nowcaster)
        _check_int("period", period, 1)
        _check_int("ctx", ctx, 1)
        if period % ctx != 0:
            raise ValueError("period (%d) must be a multiple of ctx (%d): snapshots are "
                             "period // ctx calls apart" % (period, ctx))
        _check_int("max_train_steps", max_train_steps, 1)
        if isinstance(k_decay, bool) or not isinstance(k_decay, (int, float)) or not k_decay > 0:
            raise ValueError("k_decay must be a number > 0, got %r" % (k_decay,))
        if not isinstance(nino_model, str):
            raise ValueError("nino_model must be a model name (\"\": the server's default), got %r"
                             % (nino_model,))
        _check_int("num_heads", num_heads, 0)
        _check_int("num_kv_heads", num_kv_heads, 0)
        if num_kv_heads and (not num_heads or num_heads % num_kv_heads):
            raise ValueError("num_kv_heads (%d) must divide num_heads (%d)" %
                             (num_kv_heads, num_heads))
        if num_heads and (example_input is not None or model_description is not None):
            raise ValueError("num_heads / num_kv_heads are for the graphs the server maps from "
                             "the parameter names; a model description says its heads itself")
        _check_int("seed", seed, 0)
        if seed >= 1 << 64:
            raise ValueError("seed must fit in 64 bits, got %d" % seed)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("timeout must be a number of seconds > 0, got %r" % (timeout,))
        if on_error not in ("raise", "fallback"):
            raise ValueError("on_error must be 'raise' or 'fallback', got %r" % (on_error,))
        # Read (and checked) on every rank: a bad file fails everywhere alike, at once.
        security = _client.ChannelSecurity(tls_ca_file, tls_cert_file, tls_key_file,
                                           tls_server_name, auth_token_file)
        if job_id is None:
            job_id = _default_job_id()
        elif not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
            raise ValueError("job_id must be 1..110 characters of [A-Za-z0-9._:/-], got %r" %
                             (job_id,))
        module = _unwrap(model)
        why = _sharded_reason(model) or _sharded_reason(module)
        if why:
            raise TypeError("NowcastOptimizer needs every rank to hold the whole model; sharded "
                            "parameters are not supported (%s). Use DistributedDataParallel, or "
                            "nino_nowcast on full checkpoints." % why)
        named = list(module.named_parameters())
        if not named:
            raise ValueError("the model has no parameters")
        if all(n.startswith("module.") for n, _ in named):
            named = [(n[len("module."):], p) for n, p in named]
        for n, p in named:
            if not p.is_floating_point():
                raise TypeError("parameter %s has dtype %s; NiNo needs floating-point parameters"
                                % (n, p.dtype))
            if p.device.type == "meta":
                raise ValueError("parameter %s is on the meta device (not materialised)" % n)
        description = self._description_of(module, named, example_input, model_description)

        self._base = optimizer
        self._description = description
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._num_params = sum(p.numel() for p in self._params)
        self._device = self._params[0].device
        self._address = nowcaster
        self._period, self._ctx = period, ctx
        self._interval = period // ctx
        self._max_train_steps, self._k_decay = max_train_steps, float(k_decay)
        self._schedule = horizon_schedule(max_train_steps, period, float(k_decay))
        self._on_error = on_error
        self._step_idx = 0
        self._history = []  # flat float32 CPU snapshots [P], oldest first (< ctx between calls)
        self._free_snapshots = []  # buffers of the last NiNo step's snapshots, for reuse
        self._active = True  # False: NiNo is off (the job was refused with on_error="fallback")
        self.last_outcome = None
        self._counts = {"nino_steps": 0, "nino_applied": 0, "nino_failures": 0}
        self._dist = (torch.distributed.is_available() and torch.distributed.is_initialized())
        self._rank = torch.distributed.get_rank() if self._dist else 0
        self._client = None
        self._finalizer = None

        refused = None
        pb2, _ = _client.load_stubs()  # on every rank: a missing install fails everywhere alike
        if (description is not None and
                "description" not in pb2.GraphSpec.DESCRIPTOR.fields_by_name):
            raise RuntimeError("the nino.v1 stubs found (%s) predate model descriptions; "
                               "reinstall the package (python/install.sh) or rebuild "
                               "//python:nowcaster_py_stubs" % pb2.__file__)
        if self._rank == 0:
            self._client = _client.RemoteNowcaster(
                nowcaster, job_id,
                [(n, tuple(p.shape) if p.dim() > 0 else (1,), _dtype_enum(pb2, p.dtype))
                 for n, p in named],
                nino_model, period, ctx, max_train_steps, float(k_decay), seed, float(timeout),
                rpc_timeout=min(30.0, float(timeout)), security=security,
                description=description, heads=(num_heads, num_kv_heads))
            self._finalizer = weakref.finalize(self, self._client.close)
            try:  # eagerly, so that a job the server refuses is reported here
                self._client.register(timeout=min(10.0, float(timeout)))
                sched = self._client.server_k_schedule
                if sched is not None and sched != self._schedule:
                    log.warning("nino: the server's horizon schedule %s differs from the "
                                "client's %s; the client's k is sent", sched, self._schedule)
            except _client.NowcastFailure as e:
                if e.code in _client.REFUSAL_CODES:
                    refused = str(e)
                else:
                    log.warning("nino: the nowcaster at %s is not reachable now (%s); training "
                                "goes on and registration is retried at the next snapshot",
                                nowcaster, e)
            if self._client.stats()["failovers"]:
                log.info("nino: job %s is on nowcaster replica %s (order %s)",
                         self._client.job_id, self._client.address, self._client.replicas)
        if self._dist:  # every rank takes the same decision
            flag = torch.tensor([1.0 if refused else 0.0], device=self._device)
            torch.distributed.broadcast(flag, src=0)
            if flag.item() != 0 and refused is None:
                refused = "the nowcaster refused the job (rank 0 logs the server's message)"
        if refused:
            if description is None and "needs the number of attention heads" in refused:
                refused += ("; pass num_heads= (and num_kv_heads= for grouped-query attention) "
                            "to NowcastOptimizer, or for a Llama model_description="
                            "nino.describe_llama(model, num_heads, num_kv_heads)")
            elif (description is None and "no NiNo graph for this layout" in refused and
                    "weights per edge" not in refused):
                refused += ("; the parameter names alone do not say how this model's layers "
                            "connect: pass example_input=<one batch of inputs> (or "
                            "model_description=) to NowcastOptimizer, which then describes the "
                            "model by tracing it (nino.describe_model)")
            if on_error == "raise":
                self.close()
                raise NowcasterRefused("nino: the nowcaster at %s refused the job: %s" %
                                       (nowcaster, refused))
            log.warning("nino: the nowcaster at %s refused the job (%s); on_error='fallback': "
                        "training with the base optimizer only", nowcaster, refused)
            self._active = False
            self.close()

    @staticmethod
    def _description_of(module, named, example_input, model_description):
        """The model description to register with (None: graph kind "auto")."""
        if example_input is not None and model_description is not None:
            raise ValueError("give example_input or model_description, not both")
        if example_input is not None:
            return describe_model(module, example_input)
        if model_description is None:
            return None
        description = normalize_description(model_description)
        check_description(description, [(n, tuple(p.shape)) for n, p in named])
        return description

    # ----- torch.optim.Optimizer interface, delegated to the base optimizer -----

    @property
    def base_optimizer(self):
        return self._base

    @property
    def param_groups(self):
        return self._base.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self._base.param_groups = value

    @property
    def state(self):
        return self._base.state

    @state.setter
    def state(self, value):
        self._base.state = value

    @property
    def defaults(self):
        return self._base.defaults

    @defaults.setter
    def defaults(self, value):
        self._base.defaults = value

    def add_param_group(self, param_group):
        self._base.add_param_group(param_group)

    def zero_grad(self, set_to_none=None):
        if set_to_none is None:
            self._base.zero_grad()
        else:
            self._base.zero_grad(set_to_none=set_to_none)

    def __repr__(self):
        return "NowcastOptimizer(%r, nowcaster=%r, period=%d, ctx=%d)" % (
            self._base, self._address, self._period, self._ctx)

    def __getstate__(self):
        raise TypeError("NowcastOptimizer cannot be pickled; save state_dict() instead")

    # ----- NiNo -----

    @property
    def need_grads(self):
        """False when the next step() is a NiNo step: the loop may skip backward()."""
        if not self._active:
            return True
        records = (self._step_idx + 1) % self._interval == 0
        return not (records and len(self._history) + 1 >= self._ctx)

    @property
    def model_description(self):
        """The model description the job registers with (JSON form), or None (graph kind
        "auto": the server maps the parameter names)."""
        return self._description

    @property
    def step_idx(self):
        """Index of the next step() call (0-based)."""
        return self._step_idx

    @property
    def active(self):
        """False when NiNo is off (a refused job with on_error='fallback')."""
        return self._active

    @property
    def schedule(self):
        return list(self._schedule)

    @property
    def job_id(self):
        return self._client.job_id if self._client else None

    @property
    def replica(self):
        """The nowcaster replica ("host:port") the job is on or registers with next (rank 0;
        None on other ranks)."""
        return self._client.address if self._client else None

    @property
    def replicas(self):
        """The nowcaster replicas in the job's rendezvous order (rank 0; None elsewhere)."""
        return list(self._client.replicas) if self._client else None

    @property
    def stats(self):
        """Counters: nino_steps, nino_applied, nino_failures, and on rank 0 the client's
        registrations, register_failures, uploads, upload_failures, uploads_dropped,
        predictions, prediction_failures, context_resends, failovers (moves of the job to the
        next nowcaster replica)."""
        s = dict(self._counts)
        if self._client is not None:
            s.update(self._client.stats())
        return s

    def flat_params(self):
        """The parameters as one flat float32 CPU vector [P] (named_parameters order)."""
        with torch.no_grad():
            return torch.cat([p.detach().reshape(-1).to("cpu", torch.float32)
                              for p in self._params])

    def _new_snapshot(self):
        """flat_params() into a recycled buffer when one is free (no fresh pages to fault in:
        about 4 ms instead of 200 ms per 10M parameters on a VM)."""
        with torch.no_grad():
            parts = [p.detach().reshape(-1).to("cpu", torch.float32) for p in self._params]
            if self._free_snapshots:
                return torch.cat(parts, out=self._free_snapshots.pop())
            return torch.cat(parts)  # always a new tensor, never a view of a parameter

    def _set_flat_params(self, flat):
        with torch.no_grad():
            offset = 0
            for p in self._params:
                n = p.numel()
                p.copy_(flat[offset:offset + n].view(p.shape).to(p.device, p.dtype))
                offset += n

    def step(self, closure=None):
        """One optimizer call: a base optimizer step, or a NiNo step (see need_grads).
        Returns the closure's loss on base steps (None on an applied NiNo step)."""
        out = StepOutcome(step_idx=self._step_idx)
        loss = None
        if self._active and (self._step_idx + 1) % self._interval == 0:
            self._history.append(self._new_snapshot())
            out.state_recorded = True
        if self._active and len(self._history) == self._ctx:
            out.nino_step = True
            out.k = horizon_at(self._schedule, self._step_idx, self._period)
            t0 = time.monotonic()
            try:
                out.applied, out.error = self._nino_step(out.k)
            finally:
                used, self._history = self._history, []
                # The snapshots' buffers serve the next period unless an upload still reads one.
                if self._client is None or self._client.idle():
                    self._free_snapshots = used
            out.nowcast_seconds = time.monotonic() - t0
            self._counts["nino_steps"] += 1
            if out.applied:
                self._counts["nino_applied"] += 1
                log.info("nino: NiNo step at call %d (k=%d) applied in %.3f s", out.step_idx,
                         out.k, out.nowcast_seconds)
            else:
                self._counts["nino_failures"] += 1
                log.warning("nino: NiNo step at call %d (k=%d) FAILED after %.3f s, took a base "
                            "optimizer step instead (%d failures so far): %s", out.step_idx,
                            out.k, out.nowcast_seconds, self._counts["nino_failures"], out.error)
                loss = self._base.step(closure) if closure is not None else self._base.step()
        else:
            if out.state_recorded and self._client is not None:
                self._client.state_recorded(self._step_idx, self._history[-1])
            loss = self._base.step(closure) if closure is not None else self._base.step()
        self._step_idx += 1
        self.last_outcome = out
        return loss

    def _nino_step(self, k):
        """(applied, error). Every rank returns the same `applied`."""
        pred, error = None, ""
        if self._rank == 0:
            try:
                pred = self._client.nowcast(self._history, k, self._step_idx)
                if pred.numel() != self._num_params:
                    raise _client.NowcastFailure("INTERNAL", "prediction of %d values for %d "
                                                 "parameters" % (pred.numel(), self._num_params))
            except _client.NowcastFailure as e:
                pred, error = None, str(e)
            except Exception as e:  # noqa: BLE001  a NiNo step never stops training
                pred, error = None, "%s: %s" % (type(e).__name__, e)
        if self._dist:
            flag = torch.tensor([1.0 if (self._rank != 0 or pred is not None) else 0.0],
                                device=self._device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            if flag.item() != 1.0:
                return False, error or "rank 0's nowcast failed (rank 0 logs why)"
            buf = (pred.to(self._device) if self._rank == 0 else
                   torch.empty(self._num_params, dtype=torch.float32, device=self._device))
            try:
                torch.distributed.broadcast(buf, src=0)
                ok = 1.0 if bool(torch.isfinite(buf).all()) else 0.0
            except Exception as e:  # noqa: BLE001  this rank did not get the prediction
                ok, error = 0.0, "broadcast failed on rank %d: %s" % (self._rank, e)
            # Every rank checks what it received and all agree before any applies it: a
            # prediction damaged or lost on one rank is applied by none, so ranks stay identical.
            agreed = torch.tensor([ok], device=self._device)
            try:
                torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MIN)
            except Exception as e:  # noqa: BLE001
                return False, error or "agreeing on the prediction failed: %s" % e
            if agreed.item() != 1.0:
                return False, error or ("a rank received a prediction that failed its checks "
                                        "(NaN/Inf or a failed broadcast); no rank applies it")
            pred = buf
        if pred is None:
            return False, error
        self._set_flat_params(pred)
        return True, ""

    # ----- checkpoints -----

    def state_dict(self):
        """The base optimizer's state_dict under "base", the NiNo state under "nino"."""
        return {
            "base": self._base.state_dict(),
            "nino": {
                "version": _STATE_VERSION,
                "step_idx": self._step_idx,
                "history": [h.clone() for h in self._history],
                "period": self._period,
                "ctx": self._ctx,
                "num_params": self._num_params,
            },
        }

    def load_state_dict(self, state_dict):
        """Restores state_dict(); the run then continues exactly (same snapshots, same calls).
        ValueError if it was saved with another period/ctx or for another model size."""
        if not isinstance(state_dict, dict) or "base" not in state_dict or "nino" not in state_dict:
            raise ValueError("not a NowcastOptimizer state_dict (expected keys 'base' and 'nino'; "
                             "a plain optimizer's state_dict goes to base_optimizer)")
        nino = state_dict["nino"]
        if nino.get("version") != _STATE_VERSION:
            raise ValueError("unsupported NowcastOptimizer state version %r" % nino.get("version"))
        for key, mine in (("period", self._period), ("ctx", self._ctx),
                          ("num_params", self._num_params)):
            if nino.get(key) != mine:
                raise ValueError("the state_dict was saved with %s=%r, this optimizer has %r" %
                                 (key, nino.get(key), mine))
        step_idx = nino.get("step_idx")
        if isinstance(step_idx, bool) or not isinstance(step_idx, int) or step_idx < 0:
            raise ValueError("bad step_idx %r in the state_dict" % (step_idx,))
        history = nino.get("history")
        if not isinstance(history, (list, tuple)) or len(history) >= self._ctx:
            raise ValueError("the state_dict's history must be a list of at most %d snapshots" %
                             (self._ctx - 1))
        restored = []
        for h in history:
            if not isinstance(h, torch.Tensor) or h.numel() != self._num_params:
                raise ValueError("a history snapshot does not have %d values" % self._num_params)
            restored.append(h.detach().reshape(-1).to("cpu", torch.float32).clone())
        self._base.load_state_dict(state_dict["base"])
        self._step_idx = step_idx
        self._history = restored if self._active else []
        if self._client is not None:
            # A fresh job: the server gets the restored snapshots again, in order.
            self._client.restart_job()
            # Snapshots were recorded at calls c with (c + 1) % interval == 0, the newest one at
            # the last such c before step_idx, the others interval calls apart.
            newest = (step_idx // self._interval) * self._interval - 1
            for i, h in enumerate(restored):
                self._client.state_recorded(newest - (len(restored) - 1 - i) * self._interval, h)

    def close(self):
        """Stops the upload thread and closes the job on the server (also at garbage
        collection and interpreter exit)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
