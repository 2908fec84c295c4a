"""Shared helpers of the deploy/ tests: runfiles, kubectl, rendered manifests, binaries' flags.

Runs with /usr/bin/python3 (python3-yaml comes with python3-torch, which tools/setup.sh installs).
"""
import json
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - reported by the test
    sys.stderr.write(
        "FAILED: python3-yaml is missing for %s (apt-get install python3-yaml; it comes with "
        "python3-torch from tools/setup.sh)\n" % sys.executable)
    sys.exit(1)

# kustomize features the manifests use (labels:, patches: with JSON patch files) need
# kubectl >= 1.27 (kustomize v5); Debian's kubernetes-client 1.20 bundles kustomize v2.
MIN_KUBECTL = (1, 27)


def repo_root():
    """The source tree: the runfiles tree under Bazel, else this file's repository."""
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        ws = os.environ.get("TEST_WORKSPACE", "nino_service")
        return os.path.join(srcdir, ws)
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def binary(rel, env_override):
    """A built binary: $env_override, else <runfiles>/rel, else bazel-bin/rel."""
    if os.environ.get(env_override):
        return os.environ[env_override]
    for cand in (os.path.join(repo_root(), rel), os.path.join(repo_root(), "bazel-bin", rel)):
        if os.path.exists(cand):
            return cand
    raise SystemExit("FAILED: %s not found (bazel build //%s)" % (rel, rel.replace("/", ":", 1)
                                                                 if "/" in rel else rel))


def helpfull_flags(path):
    """Flag names a binary accepts, from its --helpfull output (abseil: exit status 1)."""
    p = subprocess.run([path, "--helpfull"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    flags = set(re.findall(r"^\s+--([A-Za-z0-9_]+)\b", p.stdout, re.M))
    if len(flags) < 5:
        raise SystemExit("FAILED: no flags parsed from %s --helpfull:\n%s" % (path, p.stdout[-2000:]))
    return flags


def flag_name(arg):
    """'--name=value' / '--name' -> 'name' (None for a non-flag argument)."""
    if not arg.startswith("--"):
        return None
    return arg[2:].split("=", 1)[0]


def flag_known(name, flags):
    """abseil also takes --noNAME for a bool NAME."""
    return name in flags or (name.startswith("no") and name[2:] in flags)


def flag_value(args, name):
    """The last --name=value in args (abseil: the last one wins), or None."""
    value = None
    for a in args:
        if a.startswith("--" + name + "="):
            value = a.split("=", 1)[1]
    return value


def kubectl_status():
    """(path, None) for a usable kubectl, else (None, why)."""
    path = shutil.which("kubectl") or ("/usr/bin/kubectl" if os.path.exists("/usr/bin/kubectl") else None)
    if not path:
        return None, "kubectl is not installed (need kubectl >= %d.%d with kustomize v5)" % MIN_KUBECTL
    p = subprocess.run([path, "version", "--client", "-o", "json"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    try:
        info = json.loads(p.stdout)
        major = int(re.sub(r"\D", "", info["clientVersion"]["major"]))
        minor = int(re.sub(r"\D", "", info["clientVersion"]["minor"]))
    except (ValueError, KeyError):
        return None, "cannot read the version of %s: %s" % (path, p.stdout[-500:])
    if (major, minor) < MIN_KUBECTL:
        return None, ("%s is v%d.%d (kustomize %s); the manifests need kubectl >= %d.%d "
                      "(kustomize v5)" % (path, major, minor, info.get("kustomizeVersion", "?"),
                                          MIN_KUBECTL[0], MIN_KUBECTL[1]))
    return path, None


_MATERIALIZED = {}


def materialize(directory):
    """A plain copy of DIR's tree (symlinks followed) under a temp folder: kustomize does not
    load a kustomization.yaml that is a symlink, which is what Bazel's runfiles hold."""
    top = os.path.join(repo_root(), "deploy", "k8s")
    if not os.path.abspath(directory).startswith(top + os.sep):
        return directory
    if top not in _MATERIALIZED:
        import atexit
        import tempfile
        tmp = tempfile.mkdtemp(prefix="nino_k8s_tree_", dir=os.environ.get("TEST_TMPDIR"))
        atexit.register(shutil.rmtree, tmp, True)
        shutil.copytree(top, os.path.join(tmp, "k8s"))
        _MATERIALIZED[top] = os.path.join(tmp, "k8s")
    return os.path.join(_MATERIALIZED[top], os.path.relpath(os.path.abspath(directory), top))


def render(kubectl, directory):
    """kubectl kustomize DIR -> list of objects."""
    p = subprocess.run([kubectl, "kustomize", materialize(directory)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit("FAILED: kubectl kustomize %s:\n%s" % (directory, p.stderr))
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def load_yaml_files(directory):
    """Every object of every *.yaml file in DIR except kustomization.yaml (un-rendered)."""
    docs = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            with open(os.path.join(directory, name)) as f:
                docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def find(docs, kind, name=None):
    out = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    return out


def one(docs, kind, name):
    found = find(docs, kind, name)
    if len(found) != 1:
        raise AssertionError("expected one %s/%s, found %d" % (kind, name, len(found)))
    return found[0]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def container(obj, name):
    for c in pod_spec(obj)["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError("%s/%s has no container %s" % (obj["kind"], obj["metadata"]["name"], name))


def env_map(c):
    """Plain env values; valueFrom entries as ('from', <dict>)."""
    out = {}
    for e in c.get("env", []):
        out[e["name"]] = e["value"] if "value" in e else ("from", e.get("valueFrom"))
    return out
