"""//deploy:k8s_rehearsal_test: runs what the CPU overlay would run, as local processes.

Renders deploy/k8s/overlays/cpu, takes the container command, args and env of the nowcaster
Deployment and of the trainer Job, and starts 1 nowcaster and 2 trainer ranks with them,
changed only where a cluster and a test machine differ (all listed in the log):

  * paths: the image's binaries -> the Bazel-built ones; the image's checkpoint
    (/opt/nino/checkpoints/nino_no_posw.pt) -> the synthetic NiNo checkpoint
    (//tools:synthetic_nino_ckpt); /tmp, /runs -> folders of this test (one per pod);
  * names and ports: the Service name in --nowcaster and MASTER_ADDR (<job>-0.<subdomain>) ->
    127.0.0.1; the fixed ports (--address, --metrics_port, MASTER_PORT) -> free ports;
    RANK (the completion index from the downward API) -> 0 and 1;
  * overrides appended (the last flag wins) where the manifest's values are too long for a test:
    trainer --steps=45 --period=20 --eval_every=15 --eval_limit=500 --threads=1 --log_every=0
    --stop_at_target=false --checkpoint_every=0; nowcaster --threads=1 --lame_duck_ms=0
    --shutdown_deadline_ms=2000.

Checks: both health services the probes ask for ("" for startup/liveness, nino.v1.Nowcaster for
readiness) answer SERVING (via python3-grpcio if present), /metrics exports the HPA's and the
alert rules' metrics, the run finishes with NiNo steps applied (summary.json nino_steps > 0,
nino_failures == 0), and SIGTERM stops the nowcaster with status 0.
"""
import json
import os
import re
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
NOWCASTER_OVERRIDES = ["--threads=1", "--lame_duck_ms=0", "--shutdown_deadline_ms=2000"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port, service):
    """grpc.health.v1.Health/Check -> 'SERVING' etc., None without python3-grpcio."""
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


def main():
    kubectl, why = kc.kubectl_status()
    if not kubectl:
        print("\n" + "!" * 78 + "\n!! SKIPPED: the rehearsal needs the rendered overlay: " + why + "\n" + "!" * 78)
        return 0
    nowcaster_bin = kc.binary("nowcaster/nino_nowcaster", "NINO_NOWCASTER_BIN")
    train_bin = kc.binary("trainer/nino_train", "NINO_TRAIN_BIN")
    ckpt = kc.binary("tools/synthetic_nino.pt", "NINO_SYNTHETIC_CKPT")
    docs = kc.render(kubectl, os.path.join(K8S, "overlays", "cpu"))
    dep = kc.one(docs, "Deployment", "nino-nowcaster")
    job = kc.one(docs, "Job", "nino-train")
    nc, tc = kc.container(dep, "nowcaster"), kc.container(job, "trainer")

    tmp = tempfile.mkdtemp(prefix="nino_k8s_rehearsal_", dir=os.environ.get("TEST_TMPDIR"))
    procs = []
    try:
        # The nowcaster pod.
        grpc_port, metrics_port = free_port(), free_port()
        assert os.path.basename(nc["command"][0]) == "nino_nowcaster", nc["command"]
        args, changes = [], []
        for a in nc["args"]:
            n = kc.flag_name(a)
            new = a
            if n == "address":
                new = "--address=127.0.0.1:%d" % grpc_port
            elif n == "metrics_port":
                new = "--metrics_port=%d" % metrics_port
            elif n == "metrics_host":
                new = "--metrics_host=127.0.0.1"
            elif n == "nino_model":
                name, path = a.split("=", 1)[1].split("=", 1)
                assert path.startswith("/opt/nino/"), a
                new = "--nino_model=%s=%s" % (name, ckpt)
            if new != a:
                changes.append("%s -> %s" % (a, new))
            args.append(new)
        args += NOWCASTER_OVERRIDES
        env = dict(os.environ)
        pod_tmp = os.path.join(tmp, "nowcaster-pod", "tmp")
        os.makedirs(pod_tmp)
        for k, v in kc.env_map(nc).items():
            env[k] = v.replace("/tmp", pod_tmp) if isinstance(v, str) else v
        print("nowcaster: %s\n  mapped: %s\n  appended: %s" % (" ".join(nc["args"]), "; ".join(changes), " ".join(NOWCASTER_OVERRIDES)))
        nlog = os.path.join(tmp, "nowcaster.log")
        nproc = subprocess.Popen([nowcaster_bin] + args, env=env, stdout=open(nlog, "w"), stderr=subprocess.STDOUT)
        procs.append(nproc)
        deadline = time.time() + 120
        while "listening on 127.0.0.1:%d" % grpc_port not in open(nlog).read():
            if nproc.poll() is not None or time.time() > deadline:
                print("FAILED: the nowcaster did not come up:\n" + open(nlog).read())
                return 1
            time.sleep(0.1)
        # What the probes ask for.
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            svc = nc[probe]["grpc"].get("service", "")
            st = health(grpc_port, svc)
            if st is None:
                print("SKIPPED: %s health check (python3-grpcio missing for %s)" % (probe, sys.executable))
                break
            print("%s: grpc.health.v1 %r -> %s" % (probe, svc, st))
            if st != "SERVING":
                print("FAILED: %s service %r is %s" % (probe, svc, st))
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
            pod = os.path.join(tmp, "trainer-pod-%d" % r)
            targs, changes = [], []
            for a in tc["args"]:
                n = kc.flag_name(a)
                new = a
                if n == "nowcaster":
                    host, port = a.split("=", 1)[1].rsplit(":", 1)
                    assert host == "nino-nowcaster" and int(port) == 50051, a
                    new = "--nowcaster=127.0.0.1:%d" % grpc_port
                elif n == "out_dir":
                    new = "--out_dir=" + pod + out_flag
                if new != a:
                    changes.append("%s -> %s" % (a, new))
                targs.append(new)
            targs += TRAIN_OVERRIDES
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
            ranks.append((p, log, pod + out_flag))
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
        nproc.send_signal(signal.SIGTERM)
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
