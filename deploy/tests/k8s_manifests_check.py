"""//deploy:k8s_manifests_test: renders every overlay of deploy/k8s with `kubectl kustomize` and
checks what a cluster would only find out at run time:

  * every flag in a container's args exists in the binary's --helpfull output (nino_nowcaster,
    nino_train; also the Kubeflow TrainJob example);
  * containerPorts, gRPC probe ports and Service targetPorts agree with the --address and
    --metrics_port the args set; the trainers' --nowcaster names a Service that reaches the gRPC
    port; the c10d environment of the Indexed Job (RANK from the completion index, WORLD_SIZE =
    completions = parallelism, LOCAL_RANK=0, MASTER_ADDR = <job>-0.<headless Service>,
    MASTER_PORT = that Service's port and the container's);
  * one image per overlay, with the overlay's tag, whose Dockerfile (deploy/docker) builds the
    binary the container runs and copies it and the checkpoint to the paths the args use; the Secret names the Deployment mounts are
    the ones deploy/k8s/secrets generates;
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
OVERLAY_TAGS = {"cpu": "cpu", "gpu": "cuda"}
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


def check_nowcaster(docs, where, nflags, secret_names):
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
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        pr = c.get(probe)
        check(pr is not None and "grpc" in pr, "%s: %s is a native grpc probe" % (where, probe))
        if pr and "grpc" in pr:
            check(pr["grpc"]["port"] == grpc_port, "%s: %s port %s != --address port %d" % (where, probe, pr["grpc"]["port"], grpc_port))
            # The daemon serves exactly "", "nino.v1.Nowcaster" and "liveness" (nowcaster_server.h).
            check(pr["grpc"].get("service", "") in ("", "nino.v1.Nowcaster", "liveness"),
                  "%s: %s asks for a health service the daemon does not serve" % (where, probe))
    check(c["readinessProbe"]["grpc"].get("service") == "nino.v1.Nowcaster", "%s: readiness checks nino.v1.Nowcaster" % where)
    # Liveness must not fail while the daemon drains (readiness services go NOT_SERVING then).
    check(c["livenessProbe"]["grpc"].get("service") == "liveness", "%s: liveness checks 'liveness'" % where)
    # Resources vs flags.
    lim = c["resources"]["limits"]
    threads = int(kc.flag_value(args, "threads") or 0)
    check(0 < threads <= quantity_cpu(lim["cpu"]), "%s: --threads=%d must be 1..CPU limit %s" % (where, threads, lim["cpu"]))
    budget = int(kc.flag_value(args, "memory_budget_bytes"))
    check(budget < quantity_bytes(lim["memory"]), "%s: --memory_budget_bytes %d >= memory limit %s" % (where, budget, lim["memory"]))
    grace = kc.pod_spec(dep).get("terminationGracePeriodSeconds", 30)
    drain = int(kc.flag_value(args, "lame_duck_ms") or 0) + int(kc.flag_value(args, "shutdown_deadline_ms") or 10000)
    check(grace * 1000 > drain, "%s: terminationGracePeriodSeconds %ds <= lame duck + drain %d ms" % (where, grace, drain))
    # Secrets: the mounted names are the ones deploy/k8s/secrets makes.
    mounted = {v["secret"]["secretName"] for v in kc.pod_spec(dep)["volumes"] if "secret" in v}
    if secret_names is not None:
        check(mounted == secret_names, "%s: mounted Secrets %s != generated %s" % (where, sorted(mounted), sorted(secret_names)))
    # On all interfaces the daemon needs TLS and tokens, or --allow_insecure (exposure.h); the
    # security files it is given live in the mounted Secrets.
    has = lambda flag: kc.flag_value(args, flag) is not None
    secure = has("tls_cert") and has("tls_key") and has("auth_tokens_file")
    check(secure or "--allow_insecure" in args or "--allow_insecure=true" in args,
          "%s: --address on all interfaces needs --tls_cert, --tls_key and --auth_tokens_file, or --allow_insecure" % where)
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for flag, volume in (("tls_cert", "tls"), ("tls_key", "tls"), ("tls_client_ca", "tls"), ("auth_tokens_file", "tokens")):
        if has(flag):
            check(kc.flag_value(args, flag).startswith(mounts.get(volume, "?") + "/"),
                  "%s: --%s=%s is not under the %s Secret's mount %s" % (where, flag, kc.flag_value(args, flag), volume, mounts.get(volume)))
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


def check_trainer(docs, where, tflags, grpc_port):
    job = kc.one(docs, "Job", TRAINER)
    spec = job["spec"]
    c = kc.container(job, "trainer")
    check(os.path.basename(c["command"][0]) == "nino_train", "%s: trainer command %s" % (where, c["command"]))
    check_flags(where + " trainer", c, tflags)
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


DOCKERFILES = {"cpu": "Dockerfile.cpu", "gpu": "Dockerfile.cuda"}


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
            wanted = [c["command"][0]]
            model = kc.flag_value(c.get("args", []), "nino_model")
            if model:
                wanted += [m.split("=", 1)[-1] for m in model.split(",") if "/" in m]
            for w in wanted:
                check(any(w.startswith(x.rstrip("/") + "/") for x in dirs),
                      "%s: %s is not in a folder %s copies into the image (%s)" % (where, w, DOCKERFILES[overlay], sorted(dirs)))
            for w in wanted[1:]:
                check(os.path.basename(w) in text, "%s: %s does not put %s into the image" % (where, DOCKERFILES[overlay], os.path.basename(w)))
            check(os.path.basename(c["command"][0]) in text, "%s: %s does not build %s" % (where, DOCKERFILES[overlay], os.path.basename(c["command"][0])))


def check_images(docs, where, tag):
    images = set()
    for d in docs:
        if d.get("kind") in ("Deployment", "Job"):
            for c in kc.pod_spec(d)["containers"] + kc.pod_spec(d).get("initContainers", []):
                images.add(c["image"])
    check(len(images) == 1, "%s: one image for every container, got %s" % (where, sorted(images)))
    for i in images:
        check(i.endswith(":" + tag) and "/" in i, "%s: image %s is not <registry>/...:%s" % (where, i, tag))


def generated_secret_names(kubectl):
    """Renders deploy/k8s/secrets with placeholder files in a copy; the Secret names."""
    tmp = tempfile.mkdtemp(prefix="nino_secrets_")
    try:
        d = os.path.join(tmp, "secrets")
        shutil.copytree(os.path.join(K8S, "secrets"), d)
        os.makedirs(os.path.join(d, "files"), exist_ok=True)
        for f in ("tls.crt", "tls.key", "ca.crt", "tokens"):
            with open(os.path.join(d, "files", f), "w") as out:
                out.write("placeholder\n")
        docs = kc.render(kubectl, d)
        names = {s["metadata"]["name"] for s in kc.find(docs, "Secret")}
        tls = [s for s in kc.find(docs, "Secret") if s.get("type") == "kubernetes.io/tls"]
        check(len(tls) == 1 and {"tls.crt", "tls.key", "ca.crt"} <= set(tls[0]["data"]), "secrets: one kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt")
        return names
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
    print("flags: nino_nowcaster %d, nino_train %d (from --helpfull)" % (len(nflags), len(tflags)))
    kubectl, why = kc.kubectl_status()
    skipped = []
    if kubectl:
        print("kubectl: " + kubectl)
        secret_names = generated_secret_names(kubectl)
        overlays = sorted(os.listdir(os.path.join(K8S, "overlays")))
        check(set(overlays) == set(OVERLAY_TAGS), "overlays are %s" % overlays)
        for overlay in overlays:
            where = "overlays/" + overlay
            print("checking " + where)
            docs = kc.render(kubectl, os.path.join(K8S, "overlays", overlay))
            for d in docs:
                if d["kind"] != "Namespace":
                    check(d["metadata"].get("namespace") == "nino", "%s: %s/%s in namespace nino" % (where, d["kind"], d["metadata"]["name"]))
            _, c, grpc_port = check_nowcaster(docs, where, nflags, secret_names)
            check_gpu(where, overlay, c)
            check_trainer(docs, where, tflags, grpc_port)
            check_images(docs, where, OVERLAY_TAGS[overlay])
            check_dockerfile(docs, where, overlay)
    else:
        skipped.append("rendering the overlays with kubectl kustomize: " + why)
        # Still check the un-rendered base files (no images, namespaces, overlays or patches).
        docs = kc.load_yaml_files(os.path.join(K8S, "base", "nowcaster")) + kc.load_yaml_files(os.path.join(K8S, "base", "trainer"))
        _, _, grpc_port = check_nowcaster(docs, "base", nflags, None)
        check_trainer(docs, "base", tflags, grpc_port)
    check_adapter_and_alerts()
    check_trainjob(tflags)
    for s in skipped:
        print("\n" + "!" * 78 + "\n!! SKIPPED: " + s + "\n!! The overlays (images, namespaces, GPU patch, Secret names) were NOT checked.\n" + "!" * 78)
    if failures:
        print("\n%d of %d checks FAILED" % (len(failures), checks))
        return 1
    print("\nall %d checks passed%s" % (checks, " (with SKIPPED parts above)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
