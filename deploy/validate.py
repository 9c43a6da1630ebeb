#!/usr/bin/env python3
"""Offline validation of everything under deploy/ (run it through deploy/validate.sh,
which provides the Python packages in target/validate-venv).

Checks, each failure printed as `FAIL <file>: <what>`:

* Dockerfile and .dockerignore: COPY sources exist and are not ignored, every
  workspace member's manifest and every [[bin]] target is stubbed in the
  dependency layer, every binary lands in the runtime image, a non-root USER.
* deploy/compose.yaml: the compose-spec JSON schema (as shipped by the last
  Python docker-compose release), then structure: depends_on targets exist,
  service_healthy targets have a health check, service_completed_successfully
  targets are one-shot, offpeak services run a binary the image has, with
  environment variables the binaries read.
* deploy/k8s: every overlay rendered (kustomize subset in Python; when
  `kubectl` is on PATH, `kubectl kustomize` too, and both renders must agree),
  each object validated against the Kubernetes JSON schemas
  (kubernetes-validate, strict: unknown fields fail), KEDA objects against
  deploy/schemas/*.json, then cross-references: ConfigMap/Secret keys, env
  names, probe ports, Service and PDB selectors, autoscaler targets, grace
  period above the worker's own.
* deploy/grafana/*.json and deploy/prometheus/*.yaml: parse, structure, and
  every offpeak_* metric and label they use exists in the Rust sources.

Exit status 0 when everything is valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"  # the oldest Kubernetes minor the manifests target

FAILURES: list[str] = []
NOTES: list[str] = []


def fail(where: Path | str, what: str) -> None:
    FAILURES.append(f"FAIL {rel(where)}: {what}")


def rel(p: Path | str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except (ValueError, OSError):
        return str(p)


def load_yaml_docs(path: Path) -> list:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(path, f"YAML does not parse: {e}")
        return []


# --------------------------------------------------------------------------
# What the Rust sources define: binaries, environment variables, metrics.
# --------------------------------------------------------------------------

class Workspace:
    def __init__(self) -> None:
        root = tomllib.loads((ROOT / "Cargo.toml").read_text())
        self.members: list[str] = root["workspace"]["members"]
        self.bins: dict[str, str] = {}  # bin name -> path relative to ROOT
        self.libs: list[str] = []
        for m in self.members:
            manifest = tomllib.loads((ROOT / m / "Cargo.toml").read_text())
            for b in manifest.get("bin", []):
                self.bins[b["name"]] = f"{m}/{b.get('path', 'src/main.rs')}"
            if (ROOT / m / "src/main.rs").exists() and not manifest.get("bin"):
                self.bins[manifest["package"]["name"]] = f"{m}/src/main.rs"
            if (ROOT / m / "src/lib.rs").exists():
                self.libs.append(f"{m}/src/lib.rs")
        sources = [p for m in self.members for p in (ROOT / m / "src").rglob("*.rs")]
        text = "\n".join(p.read_text(errors="replace") for p in sources)
        self.env_vars = set(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        self.env_vars |= set(re.findall(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', text))
        self.env_vars.add("RUST_LOG")  # tracing-subscriber's EnvFilter default
        self.metrics = parse_metrics(sources)


METRIC_MACRO = re.compile(r"register_(int_)?(counter|gauge|histogram)(_vec)?!\s*\(")


def parse_metrics(sources: list[Path]) -> dict[str, dict]:
    """name -> {"type": counter|gauge|histogram, "labels": set | None (unknown)}."""
    metrics: dict[str, dict] = {}
    for path in sources:
        text = path.read_text(errors="replace")
        for m in METRIC_MACRO.finditer(text):
            # The macro's arguments: up to the matching parenthesis.
            depth, i = 1, m.end()
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            args = text[m.end():i - 1]
            name = re.match(r'\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', args)
            if not name:
                continue  # Opts-style registration: name not a literal here
            labels: set[str] | None = set()
            if m.group(3):
                lab = re.search(r'&\[\s*((?:"[^"]*"\s*,?\s*)*)\]', args)
                labels = set(re.findall(r'"([^"]*)"', lab.group(1))) if lab else None
            metrics[name.group(1)] = {"type": m.group(2), "labels": labels}
        for m in re.finditer(r'(?:Histogram)?Opts::new\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text):
            metrics.setdefault(m.group(1), {"type": "unknown", "labels": None})
    return metrics


def series_names(metrics: dict[str, dict]) -> dict[str, dict]:
    """Every series name a scrape shows: histograms add _bucket/_sum/_count."""
    out = {}
    for name, info in metrics.items():
        out[name] = info
        if info["type"] in ("histogram", "unknown"):
            for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
                labels = None if info["labels"] is None else info["labels"] | extra
                out[name + suffix] = {"type": info["type"], "labels": labels}
    return out


# --------------------------------------------------------------------------
# PromQL (alerts and dashboard): metric and label names against the sources.
# --------------------------------------------------------------------------

# Metrics from other exporters the deploy files may use.
EXTERNAL_METRICS = {"up", "rabbitmq_queue_messages", "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked"}
PROMQL_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def check_promql(where: Path, ctx: str, expr: str, series: dict[str, dict]) -> None:
    if not isinstance(expr, str) or not expr.strip():
        fail(where, f"{ctx}: empty expression")
        return
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals out
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for ch in stripped:
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in pairs.values():
            if not stack or stack.pop() != ch:
                fail(where, f"{ctx}: unbalanced '{ch}' in {expr.strip()!r}")
                return
    if stack:
        fail(where, f"{ctx}: unclosed bracket in {expr.strip()!r}")
        return
    for rng in re.findall(r"\[([^\]]*)\]", stripped):
        for part in rng.split(":"):
            part = part.strip()
            if part and not part.startswith("$") and not PROMQL_DURATION.match(part):
                fail(where, f"{ctx}: bad range/duration [{rng}]")
    used = set(re.findall(r"\b(offpeak_[a-zA-Z0-9_]+)", stripped))
    allowed_labels: set[str] = set()
    unknown_labels = False
    for name in sorted(used):
        info = series.get(name)
        if info is None:
            fail(where, f"{ctx}: metric {name} is not exported by the scheduler or worker")
            unknown_labels = True
            continue
        if info["labels"] is None:
            unknown_labels = True
        else:
            allowed_labels |= info["labels"]
    # Label matchers right after a metric name.
    for name, body in re.findall(r"\b(offpeak_[a-zA-Z0-9_]+)\s*\{([^}]*)\}", expr):
        info = series.get(name)
        if not info or info["labels"] is None:
            continue
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)):
            if label not in info["labels"] and label != "__name__":
                fail(where, f"{ctx}: {name} has no label '{label}' (labels: {sorted(info['labels']) or 'none'})")
    # Grouping labels must come from the metrics used (scrape labels too).
    if used and not unknown_labels:
        scrape_labels = {"job", "instance", "namespace", "pod", "container", "service"}
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", stripped):
            for label in [g.strip() for g in group.split(",") if g.strip()]:
                if label not in allowed_labels | scrape_labels:
                    fail(where, f"{ctx}: grouping label '{label}' is on none of {sorted(used)}")


def check_alerts(path: Path, series: dict[str, dict]) -> None:
    docs = load_yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        fail(path, "expected one YAML document")
        return
    doc = docs[0]
    if doc.get("kind") == "PrometheusRule":
        doc = doc.get("spec", {})
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups:
        fail(path, "no `groups:` list")
        return
    names, alerts = set(), 0
    for g in groups:
        if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("rules"), list):
            fail(path, f"group {g!r:.60} needs a name and a rules list")
            continue
        if g["name"] in names:
            fail(path, f"duplicate group name {g['name']}")
        names.add(g["name"])
        extra = set(g) - {"name", "interval", "rules", "limit", "query_offset", "labels"}
        if extra:
            fail(path, f"group {g['name']}: unknown keys {sorted(extra)}")
        for r in g["rules"]:
            ctx = f"group {g['name']} rule {r.get('alert') or r.get('record')}"
            if not isinstance(r, dict) or ("alert" in r) == ("record" in r):
                fail(path, f"{ctx}: a rule has exactly one of alert/record")
                continue
            extra = set(r) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if extra:
                fail(path, f"{ctx}: unknown keys {sorted(extra)}")
            check_promql(path, ctx, r.get("expr"), series)
            for key in ("for", "keep_firing_for"):
                if key in r and not PROMQL_DURATION.match(str(r[key])):
                    fail(path, f"{ctx}: {key}: {r[key]!r} is not a duration")
            if "alert" in r:
                alerts += 1
                sev = (r.get("labels") or {}).get("severity")
                if sev not in {"critical", "warning", "info"}:
                    fail(path, f"{ctx}: labels.severity must be critical, warning or info")
                ann = r.get("annotations") or {}
                if not ann.get("summary"):
                    fail(path, f"{ctx}: annotations.summary missing")
                for k, v in {**ann, **(r.get("labels") or {})}.items():
                    if str(v).count("{{") != str(v).count("}}"):
                        fail(path, f"{ctx}: unbalanced template braces in {k}")
    NOTES.append(f"{rel(path)}: {alerts} alerts in {len(groups)} groups")


def check_dashboard(path: Path, series: dict[str, dict]) -> None:
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(path, f"JSON does not parse: {e}")
        return
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            fail(path, f"dashboard has no '{key}'")
    ids, n_targets = set(), 0
    variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}

    def walk(panels):
        nonlocal n_targets
        for p in panels:
            pid = p.get("id")
            if pid in ids:
                fail(path, f"duplicate panel id {pid}")
            ids.add(pid)
            gp = p.get("gridPos", {})
            if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
                fail(path, f"panel {p.get('title')!r}: bad gridPos {gp}")
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            if not p.get("targets"):
                fail(path, f"panel {p.get('title')!r} has no targets")
            for t in p.get("targets", []):
                n_targets += 1
                expr = t.get("expr", "")
                for var in re.findall(r"\$([a-zA-Z_]\w*)", expr):
                    if var not in variables and not var.startswith("__"):
                        fail(path, f"panel {p.get('title')!r}: unknown variable ${var}")
                # Grafana's $__rate_interval etc. are durations at query time.
                check_promql(path, f"panel {p.get('title')!r}", expr.replace("$__rate_interval", "5m").replace("$__interval", "1m"), series)

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            check_promql(path, f"variable ${v.get('name')}", q, series)
    NOTES.append(f"{rel(path)}: {len(ids)} panels, {n_targets} queries")


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------

def dockerignore_patterns() -> list[tuple[bool, str]]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        fail(path, "missing")
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return out


def ignored(relpath: str, patterns) -> bool:
    """Docker's rule, simplified: a pattern excludes a path or any of its parents;
    the last matching pattern wins; `**/x` matches x at any depth."""
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, pat in patterns:
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.split("/")[-1], pat[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
        if hit:
            result = not negate
    return result


def check_dockerfile(ws: Workspace) -> None:
    candidates = [ROOT / "Dockerfile", DEPLOY / "Dockerfile"]
    found = [c for c in candidates if c.exists()]
    if len(found) != 1:
        fail(ROOT / "Dockerfile", f"expected exactly one of {[rel(c) for c in candidates]}")
        return
    path = found[0]
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    patterns = dockerignore_patterns()
    stages, copied_to_runtime, users = [], [], []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append(rest)
        elif instr == "COPY":
            args = rest.split()
            flags = [a for a in args if a.startswith("--")]
            srcs = [a for a in args if not a.startswith("--")][:-1]
            if any(f.startswith("--from=") for f in flags):
                copied_to_runtime += [Path(s).name for s in srcs]
                continue
            for s in srcs:
                if not (ROOT / s).exists():
                    fail(path, f"COPY {s}: no such path in the build context (the repository root)")
                elif ignored(s.rstrip("/"), patterns):
                    fail(path, f"COPY {s}: excluded by .dockerignore")
        elif instr == "USER":
            users.append(rest.split(":")[0])
        elif instr == "ADD":
            fail(path, "use COPY, not ADD")
    if len(stages) < 2:
        fail(path, "expected a multi-stage build (build + runtime)")
    if not users or users[-1] in {"root", "0"}:
        fail(path, "the runtime stage must end with a non-root USER")
    for m in ws.members:
        if f"{m}/Cargo.toml" not in text:
            fail(path, f"workspace member {m}: its Cargo.toml is not copied for the dependency layer")
    for lib in ws.libs:
        m = lib.split("/")[0]
        if not re.search(rf"for crate in [^;]*\b{re.escape(m)}\b", text) and lib not in text:
            fail(path, f"dependency layer does not stub {lib}")
    for name, src in ws.bins.items():
        if src not in text:
            fail(path, f"dependency layer does not stub the [[bin]] {name} ({src})")
        if name not in copied_to_runtime:
            fail(path, f"binary {name} is not copied into the runtime image")
    if ignored("Cargo.lock", patterns):
        fail(ROOT / ".dockerignore", "excludes Cargo.lock")
    NOTES.append(f"{rel(path)}: {len(stages)} stages, binaries {sorted(ws.bins)}")


# --------------------------------------------------------------------------
# Compose
# --------------------------------------------------------------------------

def check_compose(ws: Workspace, schema_path: Path | None) -> None:
    path = DEPLOY / "compose.yaml"
    docs = load_yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        fail(path, "expected one YAML mapping")
        return
    doc = docs[0]
    if schema_path is not None:
        schema = json.loads(schema_path.read_text())
        validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        for err in sorted(validator_cls(schema).iter_errors(doc), key=lambda e: list(e.path)):
            loc = ".".join(str(p) for p in err.path) or "(top)"
            fail(path, f"compose spec: {loc}: {err.message}")
    services = doc.get("services") or {}
    if not services:
        fail(path, "no services")
    for name, svc in services.items():
        if not isinstance(svc, dict):
            fail(path, f"service {name}: not a mapping")
            continue
        if "image" not in svc and "build" not in svc:
            fail(path, f"service {name}: neither image nor build")
        deps = svc.get("depends_on") or {}
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, cond in deps.items():
            target = services.get(dep)
            if target is None:
                fail(path, f"service {name}: depends_on unknown service {dep}")
                continue
            c = (cond or {}).get("condition")
            if c == "service_healthy" and not (target.get("healthcheck") or {}).get("test"):
                fail(path, f"service {name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if c == "service_completed_successfully" and target.get("restart", "no") != "no":
                fail(path, f"service {name}: waits for {dep} to complete, but {dep} restarts ({target.get('restart')})")
        cmd = svc.get("command")
        is_offpeak = "build" in svc or "offpeak" in str(svc.get("image", ""))
        if is_offpeak:
            if not isinstance(cmd, list) or not cmd or cmd[0] not in ws.bins:
                fail(path, f"service {name}: command must be a list starting with one of {sorted(ws.bins)}")
            env = svc.get("environment") or {}
            keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
            for k in keys:
                if k not in ws.env_vars:
                    fail(path, f"service {name}: environment variable {k} is read by no binary")
        hc = svc.get("healthcheck")
        if hc and isinstance(hc.get("test"), list) and hc["test"][0] == "CMD" and hc["test"][1] == "curl" and not is_offpeak:
            fail(path, f"service {name}: curl health check in an image that may not have curl")
    worker = services.get("worker") or {}
    if (worker.get("deploy") or {}).get("replicas") != 3:
        fail(path, "service worker: deploy.replicas should be 3")
    NOTES.append(f"{rel(path)}: {len(services)} services" + ("" if schema_path else " (compose-spec schema unavailable: structure only)"))


# --------------------------------------------------------------------------
# Kustomize, the subset these manifests use
# --------------------------------------------------------------------------

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass", "PersistentVolume", "ClusterTriggerAuthentication"}
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "patches"}


class Unsupported(Exception):
    pass


def build_kustomization(directory: Path, component: bool = False) -> list[dict]:
    kfile = directory / "kustomization.yaml"
    if not kfile.exists():
        raise Unsupported(f"{rel(directory)}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    extra = set(k) - KUSTOMIZATION_KEYS
    if extra:
        raise Unsupported(f"{rel(kfile)}: fields {sorted(extra)} not supported by the fallback renderer (install kubectl)")
    expected = ("kustomize.config.k8s.io/v1alpha1", "Component") if component else ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    if (k.get("apiVersion"), k.get("kind", "Kustomization")) != expected:
        raise Unsupported(f"{rel(kfile)}: expected apiVersion/kind {expected}")
    resources: list[dict] = []
    for r in k.get("resources", []):
        p = (directory / r).resolve()
        if p.is_dir():
            resources += build_kustomization(p)
        elif p.is_file():
            if directory.resolve() not in p.parents:
                raise Unsupported(f"{rel(kfile)}: {r} is outside the kustomization's directory (kustomize refuses it)")
            resources += [d for d in yaml.safe_load_all(p.read_text()) if d]
        else:
            raise Unsupported(f"{rel(kfile)}: resource {r} does not exist")
    for c in k.get("components", []):
        comp = build_kustomization((directory / c).resolve(), component=True)
        resources += comp
    for lab in k.get("labels", []):
        if lab.get("includeSelectors") or lab.get("includeTemplates"):
            raise Unsupported(f"{rel(kfile)}: labels with includeSelectors/includeTemplates")
        for r in resources:
            r.setdefault("metadata", {}).setdefault("labels", {}).update(lab.get("pairs", {}))
    for patch in k.get("patches", []):
        if set(patch) - {"path", "patch"}:
            raise Unsupported(f"{rel(kfile)}: patch targets/options")
        body = yaml.safe_load((directory / patch["path"]).read_text() if "path" in patch else patch["patch"])
        resources = apply_patch(resources, body, kfile)
    if "namespace" in k:
        for r in resources:
            if r.get("kind") not in CLUSTER_SCOPED:
                r.setdefault("metadata", {})["namespace"] = k["namespace"]
    for img in k.get("images", []):
        for r in resources:
            set_images(r, img)
    return resources


def apply_patch(resources: list[dict], patch: dict, kfile: Path) -> list[dict]:
    key = (patch.get("kind"), patch.get("metadata", {}).get("name"))
    out, hit = [], False
    for r in resources:
        if (r.get("kind"), r.get("metadata", {}).get("name")) == key:
            hit = True
            if patch.get("$patch") == "delete":
                continue
            r = merge(r, {k: v for k, v in patch.items() if k != "$patch"})
        out.append(r)
    if not hit:
        raise Unsupported(f"{rel(kfile)}: patch matches no resource {key}")
    return out


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        out = [dict(i) for i in base]
        for item in patch:
            idx = next((n for n, b in enumerate(out) if b["name"] == item["name"]), None)
            if idx is None:
                out.append(copy.deepcopy(item))
            else:
                out[idx] = merge(out[idx], item)
        return out
    return copy.deepcopy(patch)


def set_images(node, img: dict) -> None:
    if isinstance(node, dict):
        for key in ("containers", "initContainers"):
            for c in node.get(key, []) if isinstance(node.get(key), list) else []:
                image = c.get("image", "")
                name = re.split(r"[@]", image)[0]
                name = name.rsplit(":", 1)[0] if ":" in name.split("/")[-1] else name
                if name == img["name"]:
                    new = img.get("newName", name)
                    if "digest" in img:
                        c["image"] = f"{new}@{img['digest']}"
                    elif "newTag" in img:
                        c["image"] = f"{new}:{img['newTag']}"
                    else:
                        c["image"] = new + image[len(name):]
        for v in node.values():
            set_images(v, img)
    elif isinstance(node, list):
        for v in node:
            set_images(v, img)


def kubectl_render(directory: Path) -> list[dict] | None:
    kubectl = shutil.which("kubectl")
    if not kubectl or os.environ.get("OFFPEAK_VALIDATE_KUBECTL") == "0":
        return None
    try:
        res = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        NOTES.append(f"kubectl kustomize could not run ({e}); Python render only")
        return None
    if res.returncode != 0:
        fail(directory, f"kubectl kustomize failed: {res.stderr.strip()[:500]}")
        return []
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def key_of(r: dict) -> tuple:
    return (r.get("kind"), r.get("metadata", {}).get("namespace", ""), r.get("metadata", {}).get("name"))


# --------------------------------------------------------------------------
# Kubernetes objects
# --------------------------------------------------------------------------

def k8s_definitions():
    from kubernetes_validate import utils as kv
    version = [v for v in kv.all_versions() if kv.major_minor(v) == K8S_VERSION][-1]
    return kv, kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", K8S_VERSION)


def validate_against_definition(defs: dict, name: str, data) -> list[str]:
    schema = {"$schema": defs["$schema"], "$ref": f"#/$defs/{name}", "$defs": defs["$defs"]}
    return [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]


def check_k8s_object(where: str, r: dict, kv, defs) -> None:
    kind = r.get("kind")
    if not isinstance(r, dict) or not kind or not r.get("apiVersion"):
        fail(where, f"object without apiVersion/kind: {str(r)[:80]}")
        return
    name = f"{kind}/{r.get('metadata', {}).get('name')}"
    if r.get("apiVersion", "").startswith("keda.sh/"):
        schema_file = DEPLOY / "schemas" / f"keda-{kind.lower()}.json"
        if not schema_file.exists():
            fail(where, f"{name}: no local schema for KEDA kind {kind}")
            return
        schema = json.loads(schema_file.read_text())
        for e in jsonschema.Draft202012Validator(schema).iter_errors(r):
            fail(where, f"{name}: {'.'.join(map(str, e.path)) or '(top)'}: {e.message}")
        for msg in validate_against_definition(defs, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", r.get("metadata", {})):
            fail(where, f"{name}: metadata.{msg}")
        behavior = r.get("spec", {}).get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior is not None:
            for msg in validate_against_definition(defs, "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior", behavior):
                fail(where, f"{name}: spec.advanced.horizontalPodAutoscalerConfig.behavior.{msg}")
        return
    try:
        kv.validate(r, K8S_VERSION, strict=True)
    except kv.ValidationError as e:
        fail(where, f"{name}: {'.'.join(map(str, e.path)) or '(top)'}: {e.message}")
    except kv.SchemaNotFoundError:
        fail(where, f"{name}: no Kubernetes {K8S_VERSION} schema for {r.get('apiVersion')} {kind} (wrong apiVersion?)")


RABBITMQ_SCALER_KEYS = {"host", "protocol", "queueName", "mode", "value", "activationValue", "vhostName", "useRegex",
                        "excludeUnacknowledged", "pageSize", "operation", "timeout", "unsafeSsl", "hostFromEnv",
                        "usernameFromEnv", "passwordFromEnv"}


QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$")


def check_quantities(where: str, r: dict) -> None:
    """Quantities the schemas only type as string-or-number."""
    name = f"{r.get('kind')}/{r.get('metadata', {}).get('name')}"

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if path and path[-1] in ("requests", "limits") and k in ("cpu", "memory", "ephemeral-storage") \
                        or path and path[-1] == "target" and k in ("averageValue", "value"):
                    if not QUANTITY.match(str(v)):
                        fail(where, f"{name}: {'.'.join(path + [k])}: {v!r} is not a Kubernetes quantity")
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [str(i)])
    walk(r, [])


def pod_specs(r: dict):
    spec = r.get("spec", {})
    if r.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        yield spec.get("template", {})
    elif r.get("kind") == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {})


def check_references(where: str, objs: list[dict], ws: Workspace) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for r in objs:
        by_kind.setdefault(r.get("kind"), {})[r.get("metadata", {}).get("name")] = r
    configmaps, secrets = by_kind.get("ConfigMap", {}), by_kind.get("Secret", {})

    def secret_keys(name):
        s = secrets.get(name)
        return None if s is None else set(s.get("stringData", {})) | set(s.get("data", {}))

    for cm in configmaps.values():
        for k in cm.get("data", {}):
            if k not in ws.env_vars:
                fail(where, f"ConfigMap/{cm['metadata']['name']}: key {k} is read by no binary")
    for r in objs:
        for tmpl in pod_specs(r):
            name = f"{r['kind']}/{r['metadata']['name']}"
            labels = tmpl.get("metadata", {}).get("labels", {})
            sel = r.get("spec", {}).get("selector", {}).get("matchLabels")
            if sel and any(labels.get(k) != v for k, v in sel.items()):
                fail(where, f"{name}: selector {sel} does not match the pod template's labels")
            pod = tmpl.get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                args = c.get("args") or c.get("command") or []
                if not args or args[0] not in ws.bins:
                    fail(where, f"{name}: container {c.get('name')} must run one of {sorted(ws.bins)} (args), got {args}")
                if "command" in c:
                    fail(where, f"{name}: container {c.get('name')}: use args, not command (keeps the image's tini entrypoint)")
                for ef in c.get("envFrom", []):
                    if "configMapRef" in ef and ef["configMapRef"]["name"] not in configmaps:
                        fail(where, f"{name}: envFrom ConfigMap {ef['configMapRef']['name']} is not in the render")
                    if "secretRef" in ef and ef["secretRef"]["name"] not in secrets:
                        fail(where, f"{name}: envFrom Secret {ef['secretRef']['name']} is not in the render")
                for e in c.get("env", []):
                    if e["name"] not in ws.env_vars:
                        fail(where, f"{name}: env {e['name']} is read by no binary")
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    # `optional: true` is a key an operator may leave out
                    # (the binary then runs without it); the Secret must
                    # still be in the render.
                    if ref:
                        keys = secret_keys(ref["name"])
                        if keys is None or (ref["key"] not in keys and not ref.get("optional", False)):
                            fail(where, f"{name}: env {e['name']} refers to missing secret key {ref['name']}/{ref['key']}")
                    ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                    if ref and ref["key"] not in configmaps.get(ref["name"], {}).get("data", {}):
                        fail(where, f"{name}: env {e['name']} refers to missing ConfigMap key {ref['name']}/{ref['key']}")
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    port = (c.get(probe) or {}).get("httpGet", {}).get("port")
                    if port is not None and port not in ports and port not in ports.values():
                        fail(where, f"{name}: {probe} uses port {port} the container does not declare")
                if r["kind"] == "Deployment" and not c.get("livenessProbe"):
                    fail(where, f"{name}: container {c.get('name')} has no livenessProbe")
                if r["kind"] == "Deployment" and not c.get("readinessProbe"):
                    fail(where, f"{name}: container {c.get('name')} has no readinessProbe")
                res = c.get("resources", {})
                if not res.get("requests", {}).get("memory") or not res.get("limits", {}).get("memory"):
                    fail(where, f"{name}: container {c.get('name')} needs memory requests and limits")
            ann = tmpl.get("metadata", {}).get("annotations", {})
            if r["kind"] == "Deployment" and ann.get("prometheus.io/scrape") != "true":
                fail(where, f"{name}: pod template lacks prometheus.io/scrape annotations")
            if r["kind"] == "Deployment" and ann.get("prometheus.io/port"):
                declared = {str(p["containerPort"]) for c in pod.get("containers", []) for p in c.get("ports", [])}
                if ann["prometheus.io/port"] not in declared:
                    fail(where, f"{name}: prometheus.io/port {ann['prometheus.io/port']} is not a container port")
    # Selectors of Services and PDBs select some pod template.
    templates = [t.get("metadata", {}).get("labels", {}) for r in objs for t in pod_specs(r)]
    for kind in ("Service", "PodDisruptionBudget"):
        for r in by_kind.get(kind, {}).values():
            sel = r["spec"].get("selector", {})
            sel = sel.get("matchLabels", {}) if kind == "PodDisruptionBudget" else sel
            if not any(all(t.get(k) == v for k, v in sel.items()) for t in templates):
                fail(where, f"{kind}/{r['metadata']['name']}: selector {sel} matches no pod template")
    deployments = by_kind.get("Deployment", {})
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for r in by_kind.get(kind, {}).values():
            target = r["spec"].get("scaleTargetRef", {}).get("name")
            if target not in deployments:
                fail(where, f"{kind}/{r['metadata']['name']}: scaleTargetRef {target} is not a Deployment in the render")
            elif "replicas" in deployments[target].get("spec", {}):
                fail(where, f"Deployment/{target}: sets spec.replicas although {kind} owns it")
    queue = next((cm.get("data", {}).get("OFFPEAK_QUEUE") for cm in configmaps.values()), None) or "offpeak.batches"
    auths = by_kind.get("TriggerAuthentication", {})
    for r in by_kind.get("ScaledObject", {}).values():
        for t in r["spec"].get("triggers", []):
            ref = (t.get("authenticationRef") or {}).get("name")
            if ref and ref not in auths:
                fail(where, f"ScaledObject/{r['metadata']['name']}: TriggerAuthentication {ref} is not in the render")
            if t.get("type") == "rabbitmq":
                md = t.get("metadata", {})
                if set(md) - RABBITMQ_SCALER_KEYS:
                    fail(where, f"ScaledObject/{r['metadata']['name']}: unknown rabbitmq scaler keys {sorted(set(md) - RABBITMQ_SCALER_KEYS)}")
                if md.get("queueName") != queue:
                    fail(where, f"ScaledObject/{r['metadata']['name']}: queueName {md.get('queueName')} is not OFFPEAK_QUEUE ({queue})")
                if md.get("mode") not in {"QueueLength", "MessageRate"} or md.get("protocol", "auto") not in {"amqp", "http", "auto"}:
                    fail(where, f"ScaledObject/{r['metadata']['name']}: bad mode/protocol")
                if not re.fullmatch(r"\d+(\.\d+)?", md.get("value", "")):
                    fail(where, f"ScaledObject/{r['metadata']['name']}: value must be a number in a string")
    for r in auths.values():
        for ref in r["spec"].get("secretTargetRef", []):
            keys = secret_keys(ref["name"])
            if keys is None or ref["key"] not in keys:
                fail(where, f"TriggerAuthentication/{r['metadata']['name']}: secret key {ref['name']}/{ref['key']} is not in the render")
    for r in by_kind.get("HorizontalPodAutoscaler", {}).values():
        for m in r["spec"].get("metrics", []):
            sel = m.get("external", {}).get("metric", {}).get("selector", {}).get("matchLabels", {})
            if "queue" in sel and sel["queue"] != queue:
                fail(where, f"HorizontalPodAutoscaler/{r['metadata']['name']}: queue {sel['queue']} is not OFFPEAK_QUEUE ({queue})")
    # The worker's grace period must exceed its own shutdown grace.
    worker = deployments.get("offpeak-worker")
    if worker:
        grace = int(next((cm.get("data", {}).get("OFFPEAK_SHUTDOWN_GRACE_SECS", 30) for cm in configmaps.values()), 30))
        tgps = worker["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if tgps <= grace:
            fail(where, f"Deployment/offpeak-worker: terminationGracePeriodSeconds {tgps} must exceed OFFPEAK_SHUTDOWN_GRACE_SECS {grace}")
    pdb_targets = {json.dumps(r["spec"].get("selector", {}).get("matchLabels", {}), sort_keys=True) for r in by_kind.get("PodDisruptionBudget", {}).values()}
    for d in deployments.values():
        if json.dumps(d["spec"]["selector"].get("matchLabels", {}), sort_keys=True) not in pdb_targets:
            fail(where, f"Deployment/{d['metadata']['name']}: no PodDisruptionBudget selects it")


def check_k8s(ws: Workspace) -> None:
    kv, defs = k8s_definitions()
    k8s = DEPLOY / "k8s"
    overlays = sorted(p for p in (k8s / "overlays").iterdir() if (p / "kustomization.yaml").exists())
    if not overlays:
        fail(k8s / "overlays", "no overlay")
    # Every YAML file must belong to some kustomization (no stray manifests).
    referenced: set[Path] = set()
    for kfile in k8s.rglob("kustomization.yaml"):
        referenced.add(kfile.resolve())
        k = yaml.safe_load(kfile.read_text()) or {}
        for r in k.get("resources", []) + [p["path"] for p in k.get("patches", []) if "path" in p]:
            referenced.add((kfile.parent / r).resolve())
    for y in k8s.rglob("*.yaml"):
        if y.resolve() not in referenced:
            fail(y, "not referenced by any kustomization.yaml")
        load_yaml_docs(y)  # parse errors are reported per file
    kubectl_used = False
    for target in [k8s / "base"] + overlays:
        try:
            objs = build_kustomization(target)
        except (Unsupported, yaml.YAMLError, OSError) as e:
            fail(target, str(e))
            continue
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            fail(target, f"malformed kustomization (or a file it includes): {type(e).__name__}: {e}")
            continue
        seen = set()
        for r in objs:
            if key_of(r) in seen:
                fail(target, f"duplicate object {key_of(r)}")
            seen.add(key_of(r))
        real = kubectl_render(target)
        if real is not None:
            kubectl_used = True
            ours = sorted(json.dumps(o, sort_keys=True) for o in objs)
            theirs = sorted(json.dumps(o, sort_keys=True) for o in real)
            if ours != theirs:
                diff = set(theirs) ^ set(ours)
                fail(target, f"kubectl kustomize and the Python renderer disagree on {len(diff)} objects, e.g. {sorted(diff)[0][:300]}")
            objs = real
        where = f"{rel(target)} (rendered)"
        for r in objs:
            try:
                check_k8s_object(where, r, kv, defs)
                check_quantities(where, r)
            except Exception as e:  # malformed objects: report, go on
                fail(where, f"{str(r)[:80]}: {type(e).__name__}: {e}")
        try:
            check_references(where, objs, ws)
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            fail(where, f"cross-reference check hit a malformed object: {type(e).__name__}: {e}")
        kinds = sorted({r.get("kind") for r in objs})
        NOTES.append(f"{rel(target)}: {len(objs)} objects valid for Kubernetes {K8S_VERSION} ({', '.join(kinds)})")
    NOTES.append("kustomize render: " + ("Python renderer, cross-checked with kubectl kustomize" if kubectl_used
                                         else "Python renderer only (no kubectl on PATH, or OFFPEAK_VALIDATE_KUBECTL=0)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compose-schema", type=Path, help="compose-spec JSON schema")
    ap.add_argument("--root", type=Path, help="repository root (default: the one holding this script)")
    args = ap.parse_args()
    global ROOT, DEPLOY
    if args.root:
        ROOT = args.root.resolve()
        DEPLOY = ROOT / "deploy"
    ws = Workspace()
    series = series_names(ws.metrics)
    if not ws.metrics:
        fail(ROOT, "found no Prometheus metrics in the Rust sources")
    checks = [
        ("Dockerfile", lambda: check_dockerfile(ws)),
        ("compose", lambda: check_compose(ws, args.compose_schema)),
        ("kubernetes", lambda: check_k8s(ws)),
        ("grafana", lambda: [check_dashboard(p, series) for p in sorted((DEPLOY / "grafana").glob("*.json"))]),
        ("prometheus", lambda: [check_alerts(p, series) for p in sorted((DEPLOY / "prometheus").glob("*.y*ml"))]),
    ]
    for name, check in checks:
        try:
            check()
        except Exception as e:  # a crash in one check must not hide the others
            fail(DEPLOY, f"{name} check crashed: {type(e).__name__}: {e}")
    for n in NOTES:
        print(f"  checked: {n}", flush=True)
    for f in FAILURES:
        print(f, file=sys.stderr, flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
