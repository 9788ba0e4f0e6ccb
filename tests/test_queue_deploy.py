"""deploy/: what can be checked without Docker, a cluster or a GPU.

Rules protected here: the files parse; Redis runs with AOF and without eviction; workers
reserve a GPU, expose the metrics port and use ``worker check`` for liveness; names shared
across files (secret, service, stream keys, port) agree with each other and with the code;
every ``WORKER_*`` variable a file sets is a real setting (a misspelt one would be refused
at start-up, in production). Building the image and running the stack is not done here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from worker.constants import PRIORITIES, Keys
from worker.settings import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


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
    secret = _by_kind(docs, "Secret")
    deploy = _by_kind(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][0] == "monitor" and "rtsp://" not in " ".join(c["args"])
    env = {e["name"]: e for e in c["env"]}
    ref = env["WORKER_CAMERAS"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    cameras = Settings(cameras=yaml.safe_load(secret["stringData"][ref["key"]])).cameras
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
