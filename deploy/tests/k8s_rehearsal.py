"""//deploy:k8s_rehearsal_test (cpu overlay) and //deploy:k8s_tls_rehearsal_test (--overlay=tls):
runs what an overlay would run, as local processes.

Renders deploy/k8s/overlays/<overlay>, takes the container command, args and env of the
nowcaster Deployment and of the trainer Job, and the commands of exec probes, and starts 1
nowcaster and 2 trainer ranks with them, changed only where a cluster and a test machine differ
(all listed in the log):

  * paths: the image's binaries -> the Bazel-built ones; the image's checkpoint
    (/opt/nino/checkpoints/nino_no_posw.pt) -> the synthetic NiNo checkpoint
    (//tools:synthetic_nino_ckpt); /tmp, /runs -> folders of this test (one per pod); the mount
    paths of Secret volumes -> folders holding what an operator would put into those Secrets
    (tls overlay: a CA, a server certificate for the Service names nino-nowcaster,
    nino-nowcaster.nino.svc[.cluster.local] only, a client certificate, a tokens file and the
    trainers' token, all made at test time with the openssl tool);
  * names and ports: the Service name in --nowcaster and MASTER_ADDR (<job>-0.<subdomain>) ->
    127.0.0.1; the fixed ports (--address, --metrics_port, MASTER_PORT, the probes' --address)
    -> free ports; RANK (the completion index from the downward API) -> 0 and 1. With TLS the
    trainers get --nowcaster_tls_server_name=<the Service name> appended: in a cluster the name
    they connect to is what the certificate is checked against; here the address is loopback;
  * overrides appended (the last flag wins) where the manifest's values are too long for a test:
    trainer --steps=45 --period=20 --eval_every=15 --eval_limit=500 --threads=1 --log_every=0
    --stop_at_target=false --checkpoint_every=0; nowcaster --threads=1 --lame_duck_ms=3000
    --shutdown_deadline_ms=2000.

Checks: every probe succeeds (native gRPC probes: the health service they ask for is SERVING,
via python3-grpcio if present; exec probes: the command exits 0); tls overlay: the daemon runs
mutual TLS with tokens, and the readiness probe without its client certificate, or without TLS,
fails; /metrics exports the HPA's and the alert rules' metrics; the run finishes with NiNo steps
applied (summary.json nino_steps > 0, nino_failures == 0); on SIGTERM readiness fails while
liveness still succeeds (lame duck), and the nowcaster exits with status 0.
"""
import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_common as kc  # noqa: E402

ROOT = kc.repo_root()
K8S = os.path.join(ROOT, "deploy", "k8s")
TRAIN_OVERRIDES = ["--steps=45", "--period=20", "--eval_every=15", "--eval_limit=500", "--threads=1",
                   "--log_every=0", "--stop_at_target=false", "--checkpoint_every=0"]
NOWCASTER_OVERRIDES = ["--threads=1", "--lame_duck_ms=3000", "--shutdown_deadline_ms=2000"]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
SERVER_NAMES = ("nino-nowcaster", "nino-nowcaster.nino.svc", "nino-nowcaster.nino.svc.cluster.local")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port, service):
    """grpc.health.v1.Health/Check over plaintext -> 'SERVING' etc., None without python3-grpcio."""
    try:
        import grpc
    except ImportError:
        return None
    name = service.encode()
    request = (b"\x0a" + bytes([len(name)]) + name) if name else b""
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        call = ch.unary_unary("/grpc.health.v1.Health/Check")
        reply = call(request, timeout=5)
    status = reply[1] if len(reply) >= 2 and reply[0] == 0x08 else 0
    return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(status, str(status))


def scrape(port):
    """Metric names with samples on /metrics."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    return set(re.findall(r"^([a-z_][a-z0-9_]*)[ {]", text, re.M))


def openssl(*args):
    try:
        p = subprocess.run(("openssl",) + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=60)
    except FileNotFoundError:
        raise SystemExit("FAILED: the openssl command is missing (tools/setup.sh installs Debian's openssl)")
    if p.returncode != 0:
        raise SystemExit("FAILED: openssl %s:\n%s" % (" ".join(args), p.stdout))


def make_secrets(d):
    """What an operator puts into the Secrets of deploy/k8s/secrets and secrets/clients (one CA
    for server and clients): {Secret name: {key: file}}."""
    pki = os.path.join(d, "pki")
    os.makedirs(pki)
    p = lambda name: os.path.join(pki, name)  # noqa: E731
    newkey = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *newkey, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "2",
            "-subj", "/CN=nino rehearsal CA")
    san = ",".join("DNS:" + n for n in SERVER_NAMES)
    for name, cn, ext in (("server", SERVER_NAMES[0], "subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san),
                          ("client", "nino-trainer", "extendedKeyUsage=clientAuth\n")):
        with open(p(name + ".ext"), "w") as f:
            f.write(ext)
        openssl("req", *newkey, "-keyout", p(name + ".key"), "-out", p(name + ".csr"), "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                "-set_serial", str(len(name) * 4099), "-days", "2", "-out", p(name + ".crt"),
                "-extfile", p(name + ".ext"))
    token = secrets.token_hex(20)
    with open(p("tokens"), "w") as f:
        f.write("# rehearsal\n%s nino-trainer\n" % token)
    with open(p("token"), "w") as f:
        f.write(token + "\n")
    return {
        "nino-nowcaster-tls": {"tls.crt": p("server.crt"), "tls.key": p("server.key"), "ca.crt": p("ca.crt")},
        "nino-nowcaster-tokens": {"tokens": p("tokens")},
        "nino-client-tls": {"tls.crt": p("client.crt"), "tls.key": p("client.key"), "ca.crt": p("ca.crt")},
        "nino-client-token": {"token": p("token")},
    }


class Pod:
    """Maps a container's paths to this machine: its Secret mounts to folders with the Secret's
    files, `extra` prefixes (/tmp, /runs) to test folders."""

    def __init__(self, obj, c, folder, secret_files, extra=()):
        self.prefixes = []  # (mount path, local folder), longest first
        volumes = {v["name"]: v for v in kc.pod_spec(obj).get("volumes", [])}
        for m in c.get("volumeMounts", []):
            v = volumes[m["name"]]
            if "secret" not in v:
                continue
            name = v["secret"]["secretName"]
            local = os.path.join(folder, "secret-" + name)
            os.makedirs(local, exist_ok=True)
            for key, src in secret_files.get(name, {}).items():
                shutil.copy(src, os.path.join(local, key))
            self.prefixes.append((m["mountPath"].rstrip("/"), local))
        for mount in extra:
            local = os.path.join(folder, mount.strip("/"))
            os.makedirs(local, exist_ok=True)
            self.prefixes.append((mount, local))
        self.prefixes.sort(key=lambda ml: -len(ml[0]))

    def path(self, value):
        for mount, local in self.prefixes:
            if value == mount or value.startswith(mount + "/"):
                return local + value[len(mount):]
        return value


def map_args(args, mapping):
    """Applies mapping(name, arg) -> new arg to every flag; returns (args, ["old -> new"])."""
    out, changes = [], []
    for a in args:
        new = mapping(kc.flag_name(a), a)
        if new != a:
            changes.append("%s -> %s" % (a, new))
        out.append(new)
    return out, changes


def path_flag(pod, a):
    """--flag=<a path in the pod> -> --flag=<the local path>."""
    if "=" not in a:
        return a
    name, value = a.split("=", 1)
    return name + "=" + pod.path(value)


class Probes:
    """Runs the nowcaster container's probes against the local daemon."""

    def __init__(self, nc, pod, grpc_port, manifest_port, probe_bin):
        self.nc, self.pod, self.grpc_port, self.manifest_port, self.bin = nc, pod, grpc_port, manifest_port, probe_bin
        self.logged = set()

    def command(self, probe, drop=()):
        cmd = self.nc[probe]["exec"]["command"]
        assert os.path.basename(cmd[0]) == "nino_health_probe", cmd

        def mapping(name, a):
            if name in drop:
                return None
            if name == "address":
                host, port = a.split("=", 1)[1].rsplit(":", 1)
                assert int(port) == self.manifest_port, a
                return "--address=%s:%d" % (host, self.grpc_port)
            return path_flag(self.pod, a)

        args, changes = map_args(cmd[1:], mapping)
        if probe not in self.logged and not drop:
            self.logged.add(probe)
            print("%s: exec %s\n  mapped: %s" % (probe, " ".join(cmd), "; ".join(changes)))
        return [self.bin] + [a for a in args if a is not None]

    def run(self, probe, drop=()):
        """(succeeded, what it said); succeeded None when it cannot be run here."""
        pr = self.nc[probe]
        if "grpc" in pr:
            st = health(self.grpc_port, pr["grpc"].get("service", ""))
            return (None if st is None else st == "SERVING"), "grpc.health.v1 %r -> %s" % (pr["grpc"].get("service", ""), st)
        p = subprocess.run(self.command(probe, drop), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30)
        return p.returncode == 0, "exit %d: %s" % (p.returncode, p.stdout.strip())


def start_nowcaster(nc, dep, tmp, secret_files, nowcaster_bin, ckpt):
    grpc_port, metrics_port = free_port(), free_port()
    assert os.path.basename(nc["command"][0]) == "nino_nowcaster", nc["command"]
    pod = Pod(dep, nc, os.path.join(tmp, "nowcaster-pod"), secret_files, extra=["/tmp"])

    def mapping(name, a):
        if name == "address":
            return "--address=127.0.0.1:%d" % grpc_port
        if name == "metrics_port":
            return "--metrics_port=%d" % metrics_port
        if name == "metrics_host":
            return "--metrics_host=127.0.0.1"
        if name == "nino_model":
            model, path = a.split("=", 1)[1].split("=", 1)
            assert path.startswith("/opt/nino/"), a
            return "--nino_model=%s=%s" % (model, ckpt)
        return path_flag(pod, a)

    args, changes = map_args(nc["args"], mapping)
    args += NOWCASTER_OVERRIDES
    env = dict(os.environ)
    for k, v in kc.env_map(nc).items():
        if isinstance(v, str):
            env[k] = pod.path(v)
    print("nowcaster: %s\n  mapped: %s\n  appended: %s" % (" ".join(nc["args"]), "; ".join(changes), " ".join(NOWCASTER_OVERRIDES)))
    log = os.path.join(tmp, "nowcaster.log")
    proc = subprocess.Popen([nowcaster_bin] + args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, log, pod, grpc_port, metrics_port


def trainer_args(tc, pod, grpc_port, out_dir):
    """The trainer container's args on this machine (+ the server name its TLS check needs)."""
    service = []

    def mapping(name, a):
        if name == "nowcaster":
            host, port = a.split("=", 1)[1].rsplit(":", 1)
            assert host == "nino-nowcaster" and int(port) == 50051, a
            service.append(host)
            return "--nowcaster=127.0.0.1:%d" % grpc_port
        if name == "out_dir":
            return "--out_dir=" + out_dir
        return path_flag(pod, a)

    args, changes = map_args(tc["args"], mapping)
    if kc.flag_value(args, "nowcaster_tls_ca") is not None:
        assert kc.flag_value(args, "nowcaster_tls_server_name") is None, args
        extra = "--nowcaster_tls_server_name=" + service[0]
        args.append(extra)
        changes.append("(appended) " + extra)
    return args + TRAIN_OVERRIDES, changes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--overlay", default="cpu", choices=("cpu", "tls"))
    overlay = ap.parse_args().overlay
    kubectl, why = kc.kubectl_status()
    if not kubectl:
        print("\n" + "!" * 78 + "\n!! SKIPPED: the rehearsal needs the rendered overlay: " + why + "\n" + "!" * 78)
        return 0
    nowcaster_bin = kc.binary("nowcaster/nino_nowcaster", "NINO_NOWCASTER_BIN")
    train_bin = kc.binary("trainer/nino_train", "NINO_TRAIN_BIN")
    ckpt = kc.binary("tools/synthetic_nino.pt", "NINO_SYNTHETIC_CKPT")
    docs = kc.render(kubectl, os.path.join(K8S, "overlays", overlay))
    print("overlay: " + overlay)
    dep = kc.one(docs, "Deployment", "nino-nowcaster")
    job = kc.one(docs, "Job", "nino-train")
    nc, tc = kc.container(dep, "nowcaster"), kc.container(job, "trainer")
    exec_probes = any("exec" in nc[p] for p in PROBES)
    probe_bin = kc.binary("nowcaster/nino_health_probe", "NINO_HEALTH_PROBE_BIN") if exec_probes else None

    tmp = tempfile.mkdtemp(prefix="nino_k8s_rehearsal_", dir=os.environ.get("TEST_TMPDIR"))
    procs = []
    try:
        secret_files = make_secrets(tmp) if overlay == "tls" else {}
        nproc, nlog, npod, grpc_port, metrics_port = start_nowcaster(nc, dep, tmp, secret_files, nowcaster_bin, ckpt)
        procs.append(nproc)
        deadline = time.time() + 120
        while "listening on 127.0.0.1:%d" % grpc_port not in open(nlog).read():
            if nproc.poll() is not None or time.time() > deadline:
                print("FAILED: the nowcaster did not come up:\n" + open(nlog).read())
                return 1
            time.sleep(0.1)
        if overlay == "tls":
            text = open(nlog).read()
            for want in ("), mutual TLS", "authentication: bearer tokens of 1 principals"):
                if want not in text:
                    print("FAILED: the nowcaster log lacks %r:\n%s" % (want, text))
                    return 1
            print("nowcaster: mutual TLS, bearer tokens of 1 principal (from its log)")
        manifest_port = int(kc.flag_value(nc["args"], "address").rsplit(":", 1)[1])
        probes = Probes(nc, npod, grpc_port, manifest_port, probe_bin)
        for probe in PROBES:
            ok, said = probes.run(probe)
            if ok is None:
                print("SKIPPED: %s health check (python3-grpcio missing for %s)" % (probe, sys.executable))
                continue
            print("%s: %s" % (probe, said))
            if not ok:
                print("FAILED: %s failed:\n%s" % (probe, open(nlog).read()[-3000:]))
                return 1
        if exec_probes and kc.flag_value(nc["args"], "tls_client_ca") is not None:
            # The probes' credentials are what makes them pass: without the client certificate
            # (mutual TLS) or without TLS the same probe fails.
            for drop in (("tls_cert", "tls_key"), ("tls_ca", "tls_cert", "tls_key", "tls_server_name")):
                ok, said = probes.run("readinessProbe", drop)
                print("readinessProbe without --%s: %s" % (", --".join(drop), said))
                if ok:
                    print("FAILED: the readiness probe passed without --%s" % ", --".join(drop))
                    return 1
        hpa_metrics = {m["pods"]["metric"]["name"] for m in kc.one(docs, "HorizontalPodAutoscaler", "nino-nowcaster")["spec"]["metrics"]}
        missing = sorted(hpa_metrics - scrape(metrics_port))
        if missing:
            print("FAILED: /metrics lacks the HPA's metric %s" % missing)
            return 1
        print("/metrics exports the HPA's metric %s" % ", ".join(sorted(hpa_metrics)))

        # The trainer pods (Indexed Job, 2 ranks).
        assert os.path.basename(tc["command"][0]) == "nino_train", tc["command"]
        tenv = kc.env_map(tc)
        world = int(tenv["WORLD_SIZE"])
        assert world == job["spec"]["completions"] == 2, (world, job["spec"])
        master = "%s-0.%s" % (job["metadata"]["name"], kc.pod_spec(job)["subdomain"])
        assert tenv["MASTER_ADDR"] == master, tenv
        master_port = free_port()
        out_flag = kc.flag_value(tc["args"], "out_dir")
        ranks = []
        for r in range(world):
            folder = os.path.join(tmp, "trainer-pod-%d" % r)
            pod = Pod(job, tc, folder, secret_files)
            targs, changes = trainer_args(tc, pod, grpc_port, folder + out_flag)
            e = dict(os.environ)
            for k, v in tenv.items():
                if isinstance(v, str):
                    e[k] = v
            e.update(RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port))
            if r == 0:
                print("trainer: %s\n  env: RANK=<completion index> WORLD_SIZE=%s LOCAL_RANK=%s MASTER_ADDR=%s -> 127.0.0.1 MASTER_PORT=%s -> %d"
                      "\n  mapped: %s\n  appended: %s" % (" ".join(tc["args"]), tenv["WORLD_SIZE"], tenv["LOCAL_RANK"],
                                                          tenv["MASTER_ADDR"], tenv["MASTER_PORT"], master_port,
                                                          "; ".join(changes), " ".join(TRAIN_OVERRIDES)))
            log = os.path.join(tmp, "rank%d.log" % r)
            p = subprocess.Popen([train_bin] + targs, env=e, stdout=open(log, "w"), stderr=subprocess.STDOUT)
            procs.append(p)
            ranks.append((p, log, folder + out_flag))
        t0 = time.time()
        for p, log, _ in ranks:
            try:
                code = p.wait(timeout=max(1, 150 - (time.time() - t0)))
            except subprocess.TimeoutExpired:
                print("FAILED: a trainer rank did not finish in 150 s:\n" + open(log).read()[-3000:])
                return 1
            if code != 0:
                print("FAILED: trainer exited %d:\n%s\nnowcaster:\n%s" % (code, open(log).read()[-3000:], open(nlog).read()[-3000:]))
                return 1
        print("trainers finished in %.1f s" % (time.time() - t0))
        with open(os.path.join(ranks[0][2], "summary.json")) as f:
            summary = json.load(f)
        print("rank 0 summary.json: " + json.dumps({k: summary.get(k) for k in ("steps_done", "nino_steps", "nino_failures")}))
        if not (summary.get("nino_steps", 0) > 0 and summary.get("nino_failures") == 0):
            print("FAILED: expected NiNo steps applied on the nowcaster\n" + open(ranks[0][1]).read()[-3000:] + open(nlog).read()[-3000:])
            return 1
        if "registered job" not in open(ranks[0][1]).read():
            print("FAILED: rank 0 did not register a job on the nowcaster")
            return 1
        # After the run every metric of the alert rules has samples (errors_total only once
        # an RPC failed: its absence is fine when none did).
        wanted = set()
        with open(os.path.join(K8S, "monitoring", "nino-alerts.rules.yaml")) as f:
            for g in kc.yaml.safe_load(f)["groups"]:
                for r in g["rules"]:
                    wanted |= set(re.findall(r"\b(nino_nowcaster_[a-z0-9_]+)", r["expr"]))
        missing = sorted(wanted - scrape(metrics_port) - {"nino_nowcaster_errors_total"})
        if missing:
            print("FAILED: /metrics lacks %s, which the alert rules use" % missing)
            return 1
        print("/metrics exports the alert rules' metrics: %s" % ", ".join(sorted(wanted)))
        # SIGTERM: the lame duck (--lame_duck_ms): readiness fails at once, liveness does not.
        nproc.send_signal(signal.SIGTERM)
        for probe, want in (("readinessProbe", False), ("livenessProbe", True)):
            ok, said = probes.run(probe)
            if ok is None:
                continue
            print("after SIGTERM, %s: %s" % (probe, said))
            if ok != want:
                print("FAILED: after SIGTERM the %s should %s" % (probe, "succeed" if want else "fail"))
                return 1
        code = nproc.wait(timeout=30)
        if code != 0:
            print("FAILED: the nowcaster exited %d on SIGTERM:\n%s" % (code, open(nlog).read()[-3000:]))
            return 1
        print("nowcaster stopped on SIGTERM with status 0\nPASSED")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
