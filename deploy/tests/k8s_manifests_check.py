"""//deploy:k8s_manifests_test: renders every overlay of deploy/k8s with `kubectl kustomize` and
checks what a cluster would only find out at run time:

  * every flag in a container's args exists in the binary's --helpfull output (nino_nowcaster,
    nino_train; also the Kubeflow TrainJob example), and so does every flag of an exec probe
    (nino_health_probe);
  * containerPorts, probe ports and Service targetPorts agree with the --address and
    --metrics_port the args set; the trainers' --nowcaster names a Service that reaches the gRPC
    port; the c10d environment of the Indexed Job (RANK from the completion index, WORLD_SIZE =
    completions = parallelism, LOCAL_RANK=0, MASTER_ADDR = <job>-0.<headless Service>,
    MASTER_PORT = that Service's port and the container's);
  * probes: native gRPC probes only on a plaintext daemon; with TLS, exec probes running
    nino_health_probe on 127.0.0.1 with the CA (and, under mutual TLS, a client certificate),
    each --timeout_ms below the probe's timeoutSeconds; readiness asks for nino.v1.Nowcaster,
    startup and liveness for "liveness";
  * security: a daemon on all interfaces has TLS and tokens or --allow_insecure; trainers of a
    TLS daemon pass the CA, of a mutual-TLS daemon a client certificate, of one with tokens a
    token file; every file a flag names (server, trainer, probe) lies in a mounted Secret that
    deploy/k8s/secrets or deploy/k8s/secrets/clients generates, under a key that Secret has;
    every generated Secret is used by some overlay;
  * one image per overlay, with the overlay's tag, whose Dockerfile (deploy/docker) builds the
    binaries the containers and exec probes run and copies them and the checkpoint to the paths
    the args use;
  * the GPU overlay requests nvidia.com/gpu and passes --device=cuda (the CPU one neither);
  * PDB/HPA/Services select the Deployment's pods; the HPA's metric is one the daemon exports
    (nowcaster/metrics.cc) and the prometheus-adapter rule exposes it under that name;
  * --threads fits the CPU limit, --memory_budget_bytes the memory limit, and the termination
    grace period covers --lame_duck_ms + --shutdown_deadline_ms.

Without a usable kubectl (absent, or older than 1.27 like Debian's kubernetes-client 1.20) the
rendering checks are SKIPPED (printed loudly) and the rest runs on the un-rendered base files.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_common as kc  # noqa: E402

ROOT = kc.repo_root()
K8S = os.path.join(ROOT, "deploy", "k8s")
OVERLAY_TAGS = {"cpu": "cpu", "gpu": "cuda", "tls": "cpu"}
# Kustomizations that generate the Secrets the pods mount (placeholder files when rendered here).
SECRET_DIRS = {"secrets": ("tls.crt", "tls.key", "ca.crt", "tokens"),
               "secrets/clients": ("tls.crt", "tls.key", "ca.crt", "token")}
# The health services the daemon serves (nowcaster_server.h).
HEALTH_SERVICES = ("", "nino.v1.Nowcaster", "liveness")
PROBE_BINARY = "nino_health_probe"
NOWCASTER, TRAINER = "nino-nowcaster", "nino-train"

failures = []
checks = 0


def check(cond, msg):
    global checks
    checks += 1
    if not cond:
        failures.append(msg)
        print("  FAIL: " + msg)


def quantity_cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def quantity_bytes(q):
    q = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q)


def metric_names():
    """Metric names the daemon registers (nowcaster/metrics.cc). Under Bazel the file is not
    a data dependency (not exported by //nowcaster); it is found through this script's real
    path in the source tree."""
    candidates = [os.path.join(ROOT, "nowcaster", "metrics.cc"),
                  os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "nowcaster", "metrics.cc")]
    path = next((c for c in candidates if os.path.exists(c)), None)
    if path is None:
        raise SystemExit("FAILED: nowcaster/metrics.cc not found (tried %s)" % candidates)
    with open(path) as f:
        return set(re.findall(r'\.Name\("([a-z0-9_]+)"\)', f.read()))


def check_flags(where, c, flags):
    for a in c.get("args", []):
        n = kc.flag_name(a)
        check(n is not None, "%s: argument %r is not a --flag" % (where, a))
        if n is not None:
            check(kc.flag_known(n, flags), "%s: flag --%s is not in the binary's --helpfull" % (where, n))


def resolve_port(pod_containers, port):
    """A Service targetPort (name or number) -> the containerPort number, or None."""
    for c in pod_containers:
        for p in c.get("ports", []):
            if port == p.get("name") or port == p["containerPort"]:
                return p["containerPort"]
    return None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_mounts(pod, c):
    """{mountPath: Secret name} of the container's mounts of Secret volumes."""
    secret_of = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    return {m["mountPath"].rstrip("/"): secret_of[m["name"]]
            for m in c.get("volumeMounts", []) if m["name"] in secret_of}


def check_secret_file(where, flag, path, pod, c, secrets):
    """`path` (the value of --flag) lies in a Secret mounted into container c, under a key that
    Secret has (secrets: {name: keys} as generated; None: names and keys unknown)."""
    for mount, secret in secret_mounts(pod, c).items():
        if path.startswith(mount + "/"):
            key = path[len(mount) + 1:]
            if secrets is not None:
                check(secret in secrets, "%s: --%s=%s: Secret %s is not generated by deploy/k8s/secrets*" % (where, flag, path, secret))
                check(key in secrets.get(secret, {key}), "%s: --%s=%s: Secret %s has no key %r (%s)" % (where, flag, path, secret, key, sorted(secrets.get(secret, ()))))
            return
    check(False, "%s: --%s=%s is not in a mounted Secret (%s)" % (where, flag, path, sorted(secret_mounts(pod, c))))


def check_probes(where, c, pod, args, grpc_port, pflags, secrets):
    """Native gRPC probes on a plaintext daemon; exec probes (nino_health_probe) that connect as
    a client with TLS. Returns {probe: health service asked for}."""
    has = lambda flag: kc.flag_value(args, flag) is not None
    server_tls, server_mtls = has("tls_cert"), has("tls_client_ca")
    services = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        pr = c.get(probe)
        check(pr is not None, "%s: has a %s" % (where, probe))
        if not pr:
            continue
        if "grpc" in pr:
            check(not server_tls, "%s: %s is a native gRPC probe, which cannot speak TLS: use an exec probe with %s" % (where, probe, PROBE_BINARY))
            check(pr["grpc"]["port"] == grpc_port, "%s: %s port %s != --address port %d" % (where, probe, pr["grpc"]["port"], grpc_port))
            services[probe] = pr["grpc"].get("service", "")
        elif "exec" in pr:
            cmd = pr["exec"]["command"]
            w = "%s %s" % (where, probe)
            check(os.path.basename(cmd[0]) == PROBE_BINARY, "%s: runs %s, not %s" % (w, cmd[0], PROBE_BINARY))
            check_flags(w, {"args": cmd[1:]}, pflags)
            address = kc.flag_value(cmd, "address") or "127.0.0.1:50051"
            host, port = address.rsplit(":", 1)
            check(host in ("127.0.0.1", "localhost", "[::1]"), "%s: --address=%s is not loopback (the probe runs in the pod)" % (w, address))
            check(int(port) == grpc_port, "%s: --address port %s != the daemon's %d" % (w, port, grpc_port))
            check(has("tls_cert") == (kc.flag_value(cmd, "tls_ca") is not None),
                  "%s: --tls_ca exactly when the daemon has --tls_cert" % w)
            if server_mtls:
                check(kc.flag_value(cmd, "tls_cert") is not None and kc.flag_value(cmd, "tls_key") is not None,
                      "%s: mutual TLS needs the probe's --tls_cert and --tls_key" % w)
            for flag in ("tls_ca", "tls_cert", "tls_key"):
                if kc.flag_value(cmd, flag) is not None:
                    check_secret_file(w, flag, kc.flag_value(cmd, flag), pod, c, secrets)
            timeout_ms = int(kc.flag_value(cmd, "timeout_ms") or 2000)
            check(timeout_ms < 1000 * pr.get("timeoutSeconds", 1),
                  "%s: --timeout_ms=%d must be below timeoutSeconds %s (the kubelet kills the probe then)" % (w, timeout_ms, pr.get("timeoutSeconds", 1)))
            services[probe] = kc.flag_value(cmd, "service") or ""
        else:
            check(False, "%s: %s is neither a grpc nor an exec probe" % (where, probe))
    for probe, service in services.items():
        check(service in HEALTH_SERVICES, "%s: %s asks for health service %r, which the daemon does not serve" % (where, probe, service))
    check(services.get("readinessProbe") == "nino.v1.Nowcaster", "%s: readiness checks nino.v1.Nowcaster" % where)
    # Liveness must not fail while the daemon drains (readiness services go NOT_SERVING then).
    check(services.get("livenessProbe") == "liveness", "%s: liveness checks 'liveness'" % where)
    check(services.get("startupProbe") == "liveness", "%s: startup checks 'liveness'" % where)
    return services


def check_nowcaster(docs, where, nflags, pflags, secrets):
    dep = kc.one(docs, "Deployment", NOWCASTER)
    c = kc.container(dep, "nowcaster")
    check(os.path.basename(c["command"][0]) == "nino_nowcaster", "%s: nowcaster command %s" % (where, c["command"]))
    check_flags(where + " nowcaster", c, nflags)
    args = c["args"]
    for flag in ("address", "metrics_port", "device"):
        check(sum(a.startswith("--%s=" % flag) for a in args) == 1, "%s: exactly one --%s" % (where, flag))
    grpc_port = int(kc.flag_value(args, "address").rsplit(":", 1)[1])
    metrics_port = int(kc.flag_value(args, "metrics_port"))
    check(kc.flag_value(args, "address").rsplit(":", 1)[0] in ("0.0.0.0", "[::]"),
          "%s: --address must listen on all interfaces in a pod" % where)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("grpc") == grpc_port, "%s: containerPort grpc %s != --address port %d" % (where, ports.get("grpc"), grpc_port))
    check(ports.get("metrics") == metrics_port, "%s: containerPort metrics %s != --metrics_port %d" % (where, ports.get("metrics"), metrics_port))
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/port") == str(metrics_port), "%s: prometheus.io/port annotation != --metrics_port" % where)
    check_probes(where, c, kc.pod_spec(dep), args, grpc_port, pflags, secrets)
    # Resources vs flags.
    lim = c["resources"]["limits"]
    threads = int(kc.flag_value(args, "threads") or 0)
    check(0 < threads <= quantity_cpu(lim["cpu"]), "%s: --threads=%d must be 1..CPU limit %s" % (where, threads, lim["cpu"]))
    budget = int(kc.flag_value(args, "memory_budget_bytes"))
    check(budget < quantity_bytes(lim["memory"]), "%s: --memory_budget_bytes %d >= memory limit %s" % (where, budget, lim["memory"]))
    grace = kc.pod_spec(dep).get("terminationGracePeriodSeconds", 30)
    drain = int(kc.flag_value(args, "lame_duck_ms") or 0) + int(kc.flag_value(args, "shutdown_deadline_ms") or 10000)
    check(grace * 1000 > drain, "%s: terminationGracePeriodSeconds %ds <= lame duck + drain %d ms" % (where, grace, drain))
    # Secrets: every mounted one is generated by deploy/k8s/secrets*; the daemon's own are mounted.
    mounted = {v["secret"]["secretName"] for v in kc.pod_spec(dep)["volumes"] if "secret" in v}
    check(mounted >= {"nino-nowcaster-tls", "nino-nowcaster-tokens"}, "%s: the nowcaster mounts its Secrets, got %s" % (where, sorted(mounted)))
    if secrets is not None:
        check(mounted <= set(secrets), "%s: mounted Secrets %s are not all generated (%s)" % (where, sorted(mounted), sorted(secrets)))
    # On all interfaces the daemon needs TLS and tokens, or --allow_insecure (exposure.h); the
    # security files it is given live in the mounted Secrets.
    has = lambda flag: kc.flag_value(args, flag) is not None
    secure = has("tls_cert") and has("tls_key") and has("auth_tokens_file")
    check(secure or "--allow_insecure" in args or "--allow_insecure=true" in args,
          "%s: --address on all interfaces needs --tls_cert, --tls_key and --auth_tokens_file, or --allow_insecure" % where)
    check(has("tls_cert") == has("tls_key"), "%s: --tls_cert and --tls_key: both or neither" % where)
    check(not has("tls_client_ca") or has("tls_cert"), "%s: --tls_client_ca needs --tls_cert" % where)
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "auth_tokens_file", "metrics_token_file"):
        if has(flag):
            check_secret_file(where + " nowcaster", flag, kc.flag_value(args, flag), kc.pod_spec(dep), c, secrets)
    # Services, PDB, HPA select these pods and reach its ports.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(selects(dep["spec"]["selector"]["matchLabels"], labels), "%s: Deployment selector" % where)
    services = [s for s in kc.find(docs, "Service") if selects(s["spec"].get("selector"), labels)]
    check({s["metadata"]["name"] for s in services} >= {NOWCASTER, NOWCASTER + "-headless"},
          "%s: the ClusterIP and headless Services select the nowcaster pods" % where)
    for s in services:
        for p in s["spec"]["ports"]:
            target = resolve_port([c], p.get("targetPort", p["port"]))
            check(target is not None, "%s: Service %s port %s: targetPort %s is no containerPort" % (where, s["metadata"]["name"], p["name"], p.get("targetPort")))
            if p["name"] == "grpc":
                check(target == grpc_port, "%s: Service %s grpc -> %s, not --address port %d" % (where, s["metadata"]["name"], target, grpc_port))
            if p["name"] == "metrics":
                check(target == metrics_port, "%s: Service %s metrics -> %s, not --metrics_port" % (where, s["metadata"]["name"], target))
    headless = kc.one(docs, "Service", NOWCASTER + "-headless")
    check(headless["spec"].get("clusterIP") == "None", "%s: headless Service has clusterIP None" % where)
    pdb = kc.one(docs, "PodDisruptionBudget", NOWCASTER)
    check(selects(pdb["spec"]["selector"]["matchLabels"], labels), "%s: PDB selects the nowcaster pods" % where)
    hpa = kc.one(docs, "HorizontalPodAutoscaler", NOWCASTER)
    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == NOWCASTER, "%s: HPA targets the Deployment" % where)
    check(pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "%s: PDB minAvailable < HPA minReplicas (drains possible)" % where)
    exported = metric_names()
    for m in hpa["spec"]["metrics"]:
        name = m["pods"]["metric"]["name"]
        check(name in exported, "%s: HPA metric %s is not exported by the daemon (%s)" % (where, name, sorted(exported)))
    return dep, c, grpc_port


def check_gpu(where, overlay, c):
    args = c["args"]
    lim, req = c["resources"].get("limits", {}), c["resources"].get("requests", {})
    if overlay == "gpu":
        check(kc.flag_value(args, "device") == "cuda", "%s: GPU overlay passes --device=cuda" % where)
        check(str(lim.get("nvidia.com/gpu")) == "1", "%s: GPU overlay limits nvidia.com/gpu: 1" % where)
        check(str(req.get("nvidia.com/gpu", lim.get("nvidia.com/gpu"))) == "1", "%s: GPU request = limit" % where)
    else:
        check(kc.flag_value(args, "device") == "cpu", "%s: --device=cpu" % where)
        check("nvidia.com/gpu" not in lim and "nvidia.com/gpu" not in req, "%s: no GPU requested" % where)


def check_trainer_credentials(where, job, c, nowcaster_args, secrets):
    """The trainers connect the way the daemon requires: its TLS, mutual TLS and tokens."""
    server = lambda flag: kc.flag_value(nowcaster_args, flag) is not None
    mine = lambda flag: kc.flag_value(c["args"], flag)
    needed = {"nowcaster_tls_ca": server("tls_cert"), "nowcaster_tls_cert": server("tls_client_ca"),
              "nowcaster_tls_key": server("tls_client_ca"), "auth_token_file": server("auth_tokens_file")}
    for flag, need in needed.items():
        if need:
            check(mine(flag) is not None, "%s trainer: the nowcaster's security needs --%s" % (where, flag))
        else:
            check(mine(flag) is None, "%s trainer: --%s for a nowcaster without the matching security (the handshake or calls would fail)" % (where, flag))
        if mine(flag) is not None:
            check_secret_file(where + " trainer", flag, mine(flag), kc.pod_spec(job), c, secrets)


def check_trainer(docs, where, tflags, grpc_port, nowcaster_args=(), secrets=None):
    job = kc.one(docs, "Job", TRAINER)
    spec = job["spec"]
    c = kc.container(job, "trainer")
    check(os.path.basename(c["command"][0]) == "nino_train", "%s: trainer command %s" % (where, c["command"]))
    check_flags(where + " trainer", c, tflags)
    check_trainer_credentials(where, job, c, list(nowcaster_args), secrets)
    check(spec.get("completionMode") == "Indexed", "%s: Indexed Job" % where)
    check(spec["completions"] == spec["parallelism"], "%s: every rank runs at once (parallelism = completions)" % where)
    env = kc.env_map(c)
    check(env.get("WORLD_SIZE") == str(spec["completions"]), "%s: WORLD_SIZE %s != completions %s" % (where, env.get("WORLD_SIZE"), spec["completions"]))
    rank = env.get("RANK")
    check(isinstance(rank, tuple) and rank[1].get("fieldRef", {}).get("fieldPath")
          == "metadata.annotations['batch.kubernetes.io/job-completion-index']", "%s: RANK from the completion index" % where)
    check(env.get("LOCAL_RANK") == "0", "%s: LOCAL_RANK=0" % where)
    pod = kc.pod_spec(job)
    sub = pod.get("subdomain")
    job_name = job["metadata"]["name"]
    check(env.get("MASTER_ADDR") == "%s-0.%s" % (job_name, sub),
          "%s: MASTER_ADDR %s != <job>-0.<subdomain> = %s-0.%s" % (where, env.get("MASTER_ADDR"), job_name, sub))
    svc = kc.find(docs, "Service", sub)
    check(len(svc) == 1, "%s: a Service named like the subdomain %s" % (where, sub))
    if svc:
        s = svc[0]
        check(s["spec"].get("clusterIP") == "None", "%s: %s is headless" % (where, sub))
        check(s["spec"].get("publishNotReadyAddresses") is True, "%s: %s publishes not-ready pods (rendezvous at start)" % (where, sub))
        check(selects(s["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"]), "%s: %s selects the trainer pods" % (where, sub))
        mp = int(env.get("MASTER_PORT", "0"))
        check(any(p["port"] == mp and resolve_port([c], p.get("targetPort", p["port"])) == mp for p in s["spec"]["ports"]),
              "%s: MASTER_PORT %d is the rendezvous Service's port and the container's" % (where, mp))
    # --nowcaster HOST:PORT[,HOST:PORT...] (the clients fail over along a list): each names a
    # Service (or a pod of a headless one) that reaches the nowcaster's gRPC port.
    dep = kc.one(docs, "Deployment", NOWCASTER)
    for entry in kc.flag_value(c["args"], "nowcaster").split(","):
        host, port = entry.strip().rsplit(":", 1)
        names = host.split(".")
        svc_name = names[1] if len(names) > 1 and kc.find(docs, "Service", names[1]) else names[0]
        target = kc.find(docs, "Service", svc_name)
        check(len(target) == 1, "%s: --nowcaster host %s is a Service" % (where, host))
        if target:
            ok = any(p["port"] == int(port) and resolve_port(kc.pod_spec(dep)["containers"], p.get("targetPort", p["port"])) == grpc_port
                     for p in target[0]["spec"]["ports"])
            check(ok, "%s: --nowcaster %s does not reach the nowcaster's gRPC port %d" % (where, entry, grpc_port))
    threads = int(kc.flag_value(c["args"], "threads") or 0)
    check(0 < threads <= quantity_cpu(c["resources"]["limits"]["cpu"]), "%s: trainer --threads within the CPU limit" % where)
    return job


DOCKERFILES = {"cpu": "Dockerfile.cpu", "gpu": "Dockerfile.cuda", "tls": "Dockerfile.cpu"}


def check_dockerfile(docs, where, overlay):
    """The paths the containers use exist in the image that overlay names."""
    path = os.path.join(ROOT, "deploy", "docker", DOCKERFILES[overlay])
    with open(path) as f:
        text = f.read()
    # COPY --from=build /out/bin/ /opt/nino/bin/ etc.: the image's folders.
    dirs = set(re.findall(r"^COPY --from=build \S+ (/\S+?)/?$", text, re.M))
    for d in docs:
        if d.get("kind") not in ("Deployment", "Job"):
            continue
        for c in kc.pod_spec(d)["containers"]:
            binaries = [c["command"][0]] + [c[p]["exec"]["command"][0] for p in ("startupProbe", "readinessProbe", "livenessProbe")
                                            if "exec" in c.get(p, {})]
            files = []
            model = kc.flag_value(c.get("args", []), "nino_model")
            if model:
                files += [m.split("=", 1)[-1] for m in model.split(",") if "/" in m]
            for w in binaries + files:
                check(any(w.startswith(x.rstrip("/") + "/") for x in dirs),
                      "%s: %s is not in a folder %s copies into the image (%s)" % (where, w, DOCKERFILES[overlay], sorted(dirs)))
            for w in files:
                check(os.path.basename(w) in text, "%s: %s does not put %s into the image" % (where, DOCKERFILES[overlay], os.path.basename(w)))
            for w in binaries:
                check(re.search(r"\b%s\b" % re.escape(os.path.basename(w)), text) is not None,
                      "%s: %s does not build %s" % (where, DOCKERFILES[overlay], os.path.basename(w)))


def check_images(docs, where, tag):
    images = set()
    for d in docs:
        if d.get("kind") in ("Deployment", "Job"):
            for c in kc.pod_spec(d)["containers"] + kc.pod_spec(d).get("initContainers", []):
                images.add(c["image"])
    check(len(images) == 1, "%s: one image for every container, got %s" % (where, sorted(images)))
    for i in images:
        check(i.endswith(":" + tag) and "/" in i, "%s: image %s is not <registry>/...:%s" % (where, i, tag))


def generated_secrets(kubectl):
    """Renders each of SECRET_DIRS with placeholder files in a copy: {Secret name: its keys}."""
    tmp = tempfile.mkdtemp(prefix="nino_secrets_", dir=os.environ.get("TEST_TMPDIR"))
    out = {}
    try:
        shutil.copytree(os.path.join(K8S, "secrets"), os.path.join(tmp, "secrets"))
        for rel, files in SECRET_DIRS.items():
            d = os.path.join(tmp, rel)
            os.makedirs(os.path.join(d, "files"), exist_ok=True)
            for f in files:
                with open(os.path.join(d, "files", f), "w") as placeholder:
                    placeholder.write("placeholder\n")
            docs = kc.render(kubectl, d)
            tls = [s for s in kc.find(docs, "Secret") if s.get("type") == "kubernetes.io/tls"]
            check(len(tls) == 1 and {"tls.crt", "tls.key", "ca.crt"} <= set(tls[0]["data"]),
                  "%s: one kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt" % rel)
            for s in kc.find(docs, "Secret"):
                check(s["metadata"]["name"] not in out, "%s: Secret %s generated twice" % (rel, s["metadata"]["name"]))
                out[s["metadata"]["name"]] = set(s.get("data", {}))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_adapter_and_alerts():
    exported = metric_names()
    with open(os.path.join(K8S, "monitoring", "prometheus-adapter-values.yaml")) as f:
        adapter = kc.yaml.safe_load(f)
    with open(os.path.join(K8S, "base", "nowcaster", "hpa.yaml")) as f:
        hpa_metrics = {m["pods"]["metric"]["name"] for m in kc.yaml.safe_load(f)["spec"]["metrics"]}
    exposed = set()
    for rule in adapter["rules"]["custom"]:
        series = re.match(r"([a-z0-9_]+)", rule["seriesQuery"]).group(1)
        check(series in exported, "adapter: series %s is not exported by the daemon" % series)
        exposed.add(rule["name"]["as"] if "as" in rule.get("name", {}) else series)
    check(hpa_metrics <= exposed, "adapter: HPA metrics %s not all exposed (%s)" % (sorted(hpa_metrics), sorted(exposed)))
    with open(os.path.join(K8S, "monitoring", "nino-alerts.rules.yaml")) as f:
        rules = kc.yaml.safe_load(f)
    for g in rules["groups"]:
        for r in g["rules"]:
            for m in re.findall(r"\b(nino_nowcaster_[a-z0-9_]+)", r["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", m)
                check(m in exported or base in exported, "alert %s: metric %s is not exported" % (r["alert"], m))


def check_trainjob(tflags):
    with open(os.path.join(K8S, "kubeflow", "trainjob.yaml")) as f:
        tj = kc.yaml.safe_load(f)
    check(tj["kind"] == "TrainJob" and tj["apiVersion"].startswith("trainer.kubeflow.org/"), "trainjob: a trainer.kubeflow.org TrainJob")
    t = tj["spec"]["trainer"]
    check_flags("trainjob", {"args": t["args"]}, tflags)
    script = " ".join(t["command"])
    for var in ("RANK=\"$PET_NODE_RANK\"", "WORLD_SIZE=\"$PET_NNODES\"", "LOCAL_RANK=0",
                "MASTER_ADDR=\"$PET_MASTER_ADDR\"", "MASTER_PORT=\"$PET_MASTER_PORT\"", "nino_train"):
        check(var in script, "trainjob: the command sets %s" % var)
    check(t.get("numProcPerNode") == 1, "trainjob: one nino_train per node")


def main():
    nflags = kc.helpfull_flags(kc.binary("nowcaster/nino_nowcaster", "NINO_NOWCASTER_BIN"))
    tflags = kc.helpfull_flags(kc.binary("trainer/nino_train", "NINO_TRAIN_BIN"))
    pflags = kc.helpfull_flags(kc.binary("nowcaster/nino_health_probe", "NINO_HEALTH_PROBE_BIN"))
    print("flags: nino_nowcaster %d, nino_train %d, nino_health_probe %d (from --helpfull)"
          % (len(nflags), len(tflags), len(pflags)))
    kubectl, why = kc.kubectl_status()
    skipped = []
    if kubectl:
        print("kubectl: " + kubectl)
        secrets = generated_secrets(kubectl)
        used = set()
        overlays = sorted(os.listdir(os.path.join(K8S, "overlays")))
        check(set(overlays) == set(OVERLAY_TAGS), "overlays are %s" % overlays)
        for overlay in overlays:
            where = "overlays/" + overlay
            print("checking " + where)
            docs = kc.render(kubectl, os.path.join(K8S, "overlays", overlay))
            for d in docs:
                if d["kind"] != "Namespace":
                    check(d["metadata"].get("namespace") == "nino", "%s: %s/%s in namespace nino" % (where, d["kind"], d["metadata"]["name"]))
            dep, c, grpc_port = check_nowcaster(docs, where, nflags, pflags, secrets)
            check_gpu(where, overlay, c)
            job = check_trainer(docs, where, tflags, grpc_port, c["args"], secrets)
            for obj in (dep, job):
                used |= {v["secret"]["secretName"] for v in kc.pod_spec(obj).get("volumes", []) if "secret" in v}
            check_images(docs, where, OVERLAY_TAGS[overlay])
            check_dockerfile(docs, where, overlay)
        check(used == set(secrets), "generated Secrets %s are not all mounted by an overlay (%s)" % (sorted(secrets), sorted(used)))
    else:
        skipped.append("rendering the overlays with kubectl kustomize: " + why)
        # Still check the un-rendered base files (no images, namespaces, overlays or patches).
        docs = kc.load_yaml_files(os.path.join(K8S, "base", "nowcaster")) + kc.load_yaml_files(os.path.join(K8S, "base", "trainer"))
        _, c, grpc_port = check_nowcaster(docs, "base", nflags, pflags, None)
        check_trainer(docs, "base", tflags, grpc_port, c["args"], None)
    check_adapter_and_alerts()
    check_trainjob(tflags)
    for s in skipped:
        print("\n" + "!" * 78 + "\n!! SKIPPED: " + s + "\n!! The overlays (images, namespaces, GPU and TLS patches, Secret names) were NOT checked.\n" + "!" * 78)
    if failures:
        print("\n%d of %d checks FAILED" % (len(failures), checks))
        return 1
    print("\nall %d checks passed%s" % (checks, " (with SKIPPED parts above)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
