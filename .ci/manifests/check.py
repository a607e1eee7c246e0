"""Checks the rendered Kubernetes manifests of deploy/kubernetes, for .ci/manifests.sh.

1. Every object (and every example file given with --example) validates against the OpenAPI
   schemas of each --version, strictly: an unknown or misspelt field fails, as does a kind the
   schemas do not know. A deliberately broken DaemonSet must fail, or the check is void.
2. Every kubelet-push container starts the way the kubelet would start it: its env (values,
   fieldRefs, ConfigMap and Secret references) and args (with $(VAR) expanded like the
   kubelet does) are handed to the real binary's check-config, which must exit 0. A
   misspelt flag and a bad environment value must exit 64, or the check is void. A
   KUBELET_PUSH_* variable the binary does not know fails too: clap ignores those silently.
3. The settings kustomization.yaml shows commented out, to uncomment, are real: every one is a
   variable the binary reads, and the receiver-credential ones name files of the Secret that
   both DaemonSets mount. Uncommented into each agent container's environment, with that
   mount standing for a directory holding the example Secret's keys (and certificates made
   with openssl under cert-manager's names), check-config accepts each kind of credential
   and prints the file it will read; two kinds together, or a file the Secret lacks, exit 64.
4. The other settings shown commented out, in kustomization.yaml and in each DaemonSet's env
   (the node's exporters, which differ per OS), uncommented one at a time and then all the
   scrape settings together, are accepted by check-config in each agent container ($(VAR)
   expanded as the kubelet would), and the scrape targets they name are listed; a broken one
   exits 64, or the check is void. The ClusterRole grants nodes/metrics, which the kubelet
   asks for its /metrics* paths.

Prints one line per check; exits 1 when any fails.
"""

import argparse
import base64
import copy
import os
import re
import subprocess
import sys
import tempfile

import yaml
from kubernetes_validate import utils as kv

# What the kubelet would put in a fieldRef; check-config touches no network, so any
# plausible value does.
FIELD_SAMPLES = {
    "status.hostIP": "10.0.0.1",
    "status.hostIPs": "10.0.0.1",
    "status.podIP": "10.244.0.7",
    "status.podIPs": "10.244.0.7",
    "spec.nodeName": "node-a",
    "spec.serviceAccountName": "kubelet-push",
    "metadata.name": "kubelet-push-x7k2p",
    "metadata.namespace": "kubelet-push",
    "metadata.uid": "0b5c3f9e-0000-4000-8000-000000000000",
}
AGENT_IMAGE = re.compile(r"(^|/)kubelet-push(-windows)?([:@]|$)")
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
EXIT_USAGE = 64
# `# - KUBELET_PUSH_NAME=value   (comment)` in the configMapGenerator: a setting to uncomment.
EXAMPLE_SETTING = re.compile(r"^\s*#\s*-\s*(KUBELET_PUSH_[A-Z0-9_]+)=(\S+)", re.M)
# `# - name: KUBELET_PUSH_NAME` then `#   value: value` in a DaemonSet's env: a setting to
# uncomment.
COMMENTED_ENV = re.compile(
    r"^[ \t]*#[ \t]*-[ \t]*name:[ \t]*(KUBELET_PUSH_[A-Z0-9_]+)[ \t]*\n[ \t]*#[ \t]+value:[ \t]*(\S+)[ \t]*$", re.M
)
# The settings that add scrape targets, and what check-config prints for each.
SCRAPE_SETTINGS = {
    "KUBELET_PUSH_SCRAPE": lambda value: [f"url: {v.split('=', 1)[1]}" for v in value.split(",")],
    "KUBELET_PUSH_KUBELET_SCRAPE": lambda value: [f"kubelet path: {v} (" for v in value.split(",")],
}
CREDENTIALS_SECRET = "kubelet-push-remote"
# The key names cert-manager gives a Certificate's Secret: not in the example Secret, whose
# placeholders could not be certificates.
TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")
# The kinds of receiver credentials the examples show, by variable-name fragment.
CREDENTIAL_KINDS = {
    "bearer token": ("BEARER_TOKEN",),
    "basic auth": ("BASIC_AUTH",),
    "mutual TLS": ("CA_FILE", "CERT_FILE", "KEY_FILE"),
}

failures = 0
passes = 0


def report(ok, what, detail=""):
    global failures, passes
    if ok:
        passes += 1
    else:
        failures += 1
    print(f"{'ok  ' if ok else 'FAIL'}  {what}{(': ' + detail) if detail else ''}", flush=True)


def describe(obj):
    meta = obj.get("metadata", {})
    name = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta.get("name")
    return f"{obj['kind']} {name}"


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def validate(obj, version):
    """None when `obj` is valid for `version`, else why not."""
    try:
        kv.validate(obj, version, strict=True)
        return None
    except kv.ValidationError as e:
        return f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}"
    except (kv.SchemaNotFoundError, kv.VersionNotSupportedError) as e:
        return e.message


def expand(value, env):
    """$(VAR) the way the kubelet expands it; an unknown VAR is an error here (the kubelet
    would pass it on literally, which is never what the manifest meant)."""
    missing = []

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name not in env:
            missing.append(name)
            return m.group(0)
        return env[name]

    out = VAR_REF.sub(sub, value)
    if missing:
        raise ValueError(f"$({missing[0]}) refers to no variable defined before it")
    return out


class Lookup:
    """ConfigMaps and Secrets by (namespace, name), from the rendered objects and examples."""

    def __init__(self, objects):
        self.data = {}
        for o in objects:
            if o["kind"] == "ConfigMap":
                values = dict(o.get("data") or {})
            elif o["kind"] == "Secret":
                values = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
                values.update(o.get("stringData") or {})
            else:
                continue
            meta = o["metadata"]
            self.data[(o["kind"], meta.get("namespace", "default"), meta["name"])] = values

    def get(self, kind, namespace, ref):
        """The whole object (key None) or one key; None when absent and optional."""
        values = self.data.get((kind, namespace, ref["name"]))
        key = ref.get("key")
        if values is None or (key is not None and key not in values):
            if ref.get("optional"):
                return None
            what = f"{kind} {ref['name']}" + (f" key {key}" if key else "")
            raise ValueError(f"{what} is neither rendered nor in an example file")
        return values if key is None else values[key]


def container_env(container, namespace, lookup):
    env = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in source:
                values = lookup.get(kind, namespace, source[field]) or {}
                env.update({prefix + k: v for k, v in values.items()})
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = expand(var["value"], env)
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in FIELD_SAMPLES:
                raise ValueError(f"{name}: no sample value for fieldRef {path}")
            env[name] = FIELD_SAMPLES[path]
        elif "resourceFieldRef" in source:
            env[name] = "1"
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind, ref = (
                ("ConfigMap", source["configMapKeyRef"])
                if "configMapKeyRef" in source
                else ("Secret", source["secretKeyRef"])
            )
            value = lookup.get(kind, namespace, ref)
            if value is not None:
                env[name] = value
        else:
            raise ValueError(f"{name}: unsupported valueFrom {sorted(source)}")
    return env


def known_env_names(binary):
    """KUBELET_PUSH_* names the binary reads, from its --help (and demo's)."""
    names = set()
    for argv in ([binary, "--help"], [binary, "demo", "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        # `[env: NAME=]`, or `[env: NAME]` where the value is hidden (headers).
        names.update(re.findall(r"\bKUBELET_PUSH_[A-Z0-9_]+", out))
    return names


def unknown_names(env, known):
    return sorted(n for n in env if n.startswith("KUBELET_PUSH_") and n not in known)


def check_config_argv(binary):
    """How this binary spells check-config: a subcommand or a flag."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30).stdout
    if re.search(r"^\s+check-config\b", out, re.M):
        return ["check-config"]
    if "--check-config" in out:
        return ["--check-config"]
    raise SystemExit(f"{binary} has no check-config (neither subcommand nor flag in --help)")


def run_check(binary, mode, env, args):
    # check-config checks --buffer-dir as a start would (writable, or creatable), but the
    # DaemonSet's directory is a hostPath of the node, not of this machine: check a scratch
    # directory in its place.
    with tempfile.TemporaryDirectory() as scratch:
        args = [f"--buffer-dir={scratch}/buffer" if a.startswith("--buffer-dir=") else a for a in args]
        return run_check_as_is(binary, mode, env, args)


def run_check_as_is(binary, mode, env, args):
    # Only the container's environment: nothing from CI's own may leak in.
    proc = subprocess.run(
        [binary, *mode, *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode, proc.stdout, proc.stderr


def agent_containers(objects):
    for o in objects:
        if o["kind"] not in ("DaemonSet", "Deployment", "StatefulSet", "Pod"):
            continue
        spec = o["spec"] if o["kind"] == "Pod" else o["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            if AGENT_IMAGE.search(c["image"]):
                yield o, c


def documented_settings(path):
    """(name, value) of every setting kustomization.yaml shows commented out."""
    with open(path) as f:
        return EXAMPLE_SETTING.findall(f.read())


def credentials_mount(obj, container):
    """Where `container` mounts the credentials Secret: a list, normally of one path."""
    spec = obj["spec"]["template"]["spec"]
    volumes = {
        v["name"]
        for v in spec.get("volumes", [])
        if v.get("secret", {}).get("secretName") == CREDENTIALS_SECRET
    }
    return [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in volumes]


def setting_key(name):
    """KUBELET_PUSH_REMOTE_BEARER_TOKEN_FILE -> bearer-token-file, as check-config prints it."""
    return name.removeprefix("KUBELET_PUSH_REMOTE_").lower().replace("_", "-")


def write_credentials(directory, secret):
    """The files the kubelet would write for `secret`, plus a key and a certificate (its own
    CA) under cert-manager's names."""
    for key, value in secret.items():
        with open(os.path.join(directory, key), "w") as f:
            f.write(value)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=kubelet-push",
         "-keyout", os.path.join(directory, "tls.key"), "-out", os.path.join(directory, "tls.crt")],
        check=True, capture_output=True, timeout=30,
    )
    with open(os.path.join(directory, "tls.crt")) as f, open(os.path.join(directory, "ca.crt"), "w") as g:
        g.write(f.read())


def check_documented(a, known, rendered, lookup, checked):
    """Part 3: the settings to uncomment work as their comments say."""
    documented = documented_settings(a.kustomization)
    unknown = sorted({n for n, _ in documented} - known)
    report(
        len(documented) > 5 and not unknown,
        "every setting kustomization.yaml shows commented out is one the binary reads",
        f"{len(documented)} found" + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
    )
    mounts = {describe(o) + " " + c["name"]: credentials_mount(o, c) for o, c in agent_containers(rendered)}
    paths = {p for ps in mounts.values() for p in ps}
    report(
        len(mounts) == 2 and all(len(ps) == 1 for ps in mounts.values()) and len(paths) == 1,
        f"both agent containers mount the Secret {CREDENTIALS_SECRET} once, at one path",
        "; ".join(f"{k}: {v}" for k, v in mounts.items()),
    )
    if len(paths) != 1:
        return
    mount = paths.pop()
    secret = lookup.data.get(("Secret", "kubelet-push", CREDENTIALS_SECRET)) or {}
    credentials = [(n, v) for n, v in documented if n.startswith("KUBELET_PUSH_REMOTE_")]
    files = [(n, v) for n, v in credentials if n.endswith("_FILE")]
    outside = [f"{n}={v}" for n, v in files if os.path.dirname(v) != mount]
    missing = [f"{n}={v}" for n, v in files if os.path.basename(v) not in (*secret, *TLS_KEYS)]
    report(
        len(files) >= 5 and not outside and not missing,
        f"every credential file named is a key of {CREDENTIALS_SECRET} under {mount}",
        f"{len(files)} files"
        + (f"; outside the mount: {', '.join(outside)}" if outside else "")
        + (f"; no such key in the example Secret: {', '.join(missing)}" if missing else ""),
    )
    kinds = {
        kind: [(n, v) for n, v in credentials if any(f in n for f in fragments)]
        for kind, fragments in CREDENTIAL_KINDS.items()
    }
    mode = check_config_argv(a.bin)
    with tempfile.TemporaryDirectory() as directory, tempfile.TemporaryDirectory() as empty:
        write_credentials(directory, secret)

        def env_with(env, settings, where):
            return {**env, **{n: v.replace(mount, where, 1) if n.endswith("_FILE") else v for n, v in settings}}

        for what, env, args in checked:
            for kind, settings in kinds.items():
                rc, out, err = run_check(a.bin, mode, env_with(env, settings, directory), args)
                shown = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
                wrong = [
                    n for n, v in settings
                    if shown.get(f"remote 1 {setting_key(n)}") != (v.replace(mount, directory, 1) if n.endswith("_FILE") else v)
                ]
                report(
                    len(settings) > 0 and rc == 0 and not wrong,
                    f"{what}: {kind} as kustomization.yaml shows it",
                    f"exit {rc}" + (f": {err.strip()}" if rc else "") + (f"; not shown as set: {', '.join(wrong)}" if wrong else ""),
                )
        what, env, args = checked[0]
        both = kinds["bearer token"] + kinds["basic auth"]
        rc, _, err = run_check(a.bin, mode, env_with(env, both, directory), args)
        report(
            rc == EXIT_USAGE and "--remote-bearer-token-file" in err and "--remote-basic-auth" in err,
            "a bearer token and basic auth together exit 64 naming both, as the comment says",
            f"exit {rc}: {err.strip().splitlines()[0] if err.strip() else ''}",
        )
        rc, _, err = run_check(a.bin, mode, env_with(env, kinds["bearer token"], empty), args)
        report(
            rc == EXIT_USAGE and "--remote-bearer-token-file" in err,
            f"without the Secret, a setting naming its token file exits 64 naming the flag",
            f"exit {rc}: {err.strip().splitlines()[0] if err.strip() else ''}",
        )


def commented_env(kustomization):
    """{DaemonSet name: [(name, value)]}: the env settings each DaemonSet's source file shows
    commented out."""
    base = os.path.dirname(kustomization)
    with open(kustomization) as f:
        resources = yaml.safe_load(f).get("resources", [])
    out = {}
    for resource in resources:
        with open(os.path.join(base, resource)) as f:
            text = f.read()
        daemonsets = [d["metadata"]["name"] for d in yaml.safe_load_all(text) if d and d.get("kind") == "DaemonSet"]
        found = COMMENTED_ENV.findall(text)
        if len(daemonsets) == 1:
            out[daemonsets[0]] = found
        elif found:
            report(False, f"{resource}: commented env settings outside a single DaemonSet", str(found))
    return out


def scrape_lines(out):
    """What check-config printed after `scrape N `, for every target."""
    return [line.split(" ", 2)[2] for line in out.splitlines() if re.match(r"scrape \d+ ", line)]


def check_settings(a, known, rendered, checked, owners):
    """Part 4: the other settings shown commented out work as their comments say."""
    documented = [(n, v) for n, v in documented_settings(a.kustomization) if not n.startswith("KUBELET_PUSH_REMOTE_")]
    per_daemonset = commented_env(a.kustomization)
    for name, settings in sorted(per_daemonset.items()):
        unknown = sorted({n for n, _ in settings} - known)
        report(
            len(settings) > 0 and not unknown,
            f"DaemonSet {name} shows env settings commented out, each one the binary reads",
            ", ".join(n for n, _ in settings) + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    mode = check_config_argv(a.bin)
    for what, env, args in checked:
        settings = documented + per_daemonset.get(owners[what], [])
        for n, v in settings:
            value = expand(v, env)
            rc, out, err = run_check(a.bin, mode, {**env, n: value}, args)
            wanted = SCRAPE_SETTINGS.get(n, lambda _: [])(value)
            shown = scrape_lines(out)
            missing = [w for w in wanted if not any(line.startswith(w) for line in shown)]
            report(
                rc == 0 and not missing,
                f"{what}: {n}={v} uncommented",
                f"exit {rc}" + (f": {err.strip()}" if rc else "") + (f"; targets not listed: {missing}" if missing else ""),
            )
        scrape = {n: expand(v, env) for n, v in settings if n in SCRAPE_SETTINGS}
        rc, out, err = run_check(a.bin, mode, {**env, **scrape}, args)
        jobs = [line for line in scrape_lines(out) if line.startswith("job: ")]
        expected = sum(len(v.split(",")) for v in scrape.values())
        report(
            len(scrape) >= 2 and rc == 0 and len(jobs) == expected,
            f"{what}: every scrape setting uncommented together ({', '.join(scrape)})",
            f"exit {rc}" + (f": {err.strip()}" if rc else f"; {len(jobs)} targets listed, {expected} expected"),
        )
        broken = {n: v.replace("http://", "gopher://") for n, v in scrape.items() if n == "KUBELET_PUSH_SCRAPE"}
        rc, _, err = run_check(a.bin, mode, {**env, **broken}, args)
        report(
            len(broken) == 1 and rc == EXIT_USAGE and "--scrape" in err,
            f"{what}: a scrape setting with a gopher:// URL exits 64 naming --scrape",
            f"exit {rc}: {err.strip().splitlines()[0] if err.strip() else ''}",
        )
    roles = [o for o in rendered if o["kind"] == "ClusterRole"]
    granted = {r for o in roles for rule in o.get("rules", []) for r in rule.get("resources", []) if "get" in rule.get("verbs", [])}
    report(
        "nodes/metrics" in granted,
        "the ClusterRole grants get on nodes/metrics, which the kubelet asks for /metrics*",
        ", ".join(sorted(granted)),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rendered", required=True, help="output of kubectl kustomize")
    p.add_argument("--example", action="append", default=[], help="a manifest not applied by default")
    p.add_argument("--version", action="append", required=True, help="Kubernetes version, e.g. 1.26")
    p.add_argument("--bin", required=True, help="the kubelet-push binary")
    p.add_argument("--kustomization", required=True, help="kustomization.yaml, for its commented settings")
    a = p.parse_args()

    rendered = load(a.rendered)
    examples = [o for path in a.example for o in load(path)]

    # 1. Schemas.
    for version in a.version:
        for o in rendered + examples:
            why = validate(o, version)
            report(why is None, f"schema {version:<5} {o['apiVersion']:<30} {describe(o)}", why or "")
    daemonsets = [o for o in rendered if o["kind"] == "DaemonSet"]
    report(len(daemonsets) == 2, "schema: two DaemonSets rendered", f"found {len(daemonsets)}")
    if daemonsets:
        broken = copy.deepcopy(daemonsets[0])
        broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
        for version in a.version:
            why = validate(broken, version)
            report(
                why is not None,
                f"schema {version:<5} strict mode rejects a misspelt field (readOnlyRootFileSystem)",
                why or "accepted",
            )

    # 2. Flags and environment, parsed by the binary itself.
    mode = check_config_argv(a.bin)
    known = known_env_names(a.bin)
    report(len(known) > 10, "binary --help lists KUBELET_PUSH_* variables", f"{len(known)} found")
    lookup = Lookup(rendered + examples)
    checked = []
    owners = {}
    found = 0
    for o, c in agent_containers(rendered):
        found += 1
        what = f"check-config {describe(o)} container {c['name']}"
        if c.get("command"):
            report(False, what, "sets command; the checks assume the image's entrypoint is the agent")
            continue
        try:
            env = container_env(c, o["metadata"]["namespace"], lookup)
            args = [expand(arg, env) for arg in c.get("args", [])]
        except ValueError as e:
            report(False, what, str(e))
            continue
        unknown = unknown_names(env, known)
        if unknown:
            report(False, what, f"the binary reads no {', '.join(unknown)}")
            continue
        rc, out, err = run_check(a.bin, mode, env, args)
        settings = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        summary = ", ".join(
            f"{k} {settings.get(k, '?')}"
            for k in ("kubelet-url", "node-name", "remote 1 url", "remote 1 header", "buffer-dir", "listen-address")
        )
        report(rc == 0, what, f"exit {rc}; {summary}" if rc == 0 else f"exit {rc}: {err.strip()}")
        checked.append((what, env, args))
        owners[what] = o["metadata"]["name"]
    report(found == 2, "check-config: two agent containers found", f"found {found}")

    # The check can fail: a misspelt flag, a bad value from the environment, an unknown name.
    if checked:
        what, env, args = checked[0]
        bad_args = [re.sub(r"^--kubelet-url", "--kubelet-ulr", x) for x in args]
        rc, _, err = run_check(a.bin, mode, env, bad_args)
        report(
            rc == EXIT_USAGE and "--kubelet-ulr" in err,
            "check-config rejects a misspelt flag (--kubelet-ulr)",
            f"exit {rc}: {err.strip().splitlines()[0] if err.strip() else ''}",
        )
        bad_env = {**env, "KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY": "maybe"}
        rc, _, err = run_check(a.bin, mode, bad_env, args)
        report(
            rc == EXIT_USAGE and "KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY" in err,
            "check-config rejects KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY=maybe, naming the variable",
            f"exit {rc}: {err.strip().splitlines()[0] if err.strip() else ''}",
        )
        typo = {**env, "KUBELET_PUSH_REMOTE_ULR": env.get("KUBELET_PUSH_REMOTE_URL", "x")}
        report(
            unknown_names(typo, known) == ["KUBELET_PUSH_REMOTE_ULR"],
            "an unknown variable (KUBELET_PUSH_REMOTE_ULR), which the binary would ignore, fails",
        )

    # 3. The settings shown commented out.
    if checked:
        check_documented(a, known, rendered, lookup, checked)

    # 4. The rest of them, the DaemonSets' own included.
    if checked:
        check_settings(a, known, rendered, checked, owners)

    print(f"manifests: {passes} passed, {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
