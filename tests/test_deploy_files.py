"""The deployment files in docker/, checked without a container engine.

Docker cannot build or run here, so these tests read the files: they parse, they name the
services and settings the cluster relies on (GPU reservations, Ray token authentication,
health checks, restart policies, shared /data and /results), every published port stays on
loopback, no secret is baked into the image or written into a manifest, and the files agree
with pyproject.toml and with autoft's config format. `docker compose config` runs where the
Compose v2 plugin is installed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoft.core.config import Config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
RAYJOB_FILE = DOCKER / "kuberay" / "autoft-search.yaml"
MLFLOW_K8S_FILE = DOCKER / "kuberay" / "mlflow.yaml"
STORAGE_K8S_FILE = DOCKER / "kuberay" / "storage.yaml"

RAY_NODES = ("ray-head", "ray-worker")
LONG_RUNNING = ("ray-head", "ray-worker", "mlflow", "postgres", "minio")
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
IMAGE_SPACES = "/opt/autoft/search_spaces/"  # where the Dockerfile copies search_spaces/


# --------------------------------------------------------------------------- helpers


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _option(argv: list[str], flag: str) -> str:
    """The value after ``flag`` in ``argv`` (``--flag value`` or ``--flag=value``)."""
    for i, arg in enumerate(argv):
        if arg == flag:
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} missing from {argv}")


def _volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of a service's short-syntax volumes (``SOURCE:TARGET[:MODE]``,
    where SOURCE may be a ``${VAR:-default}`` interpolation)."""
    volume = re.compile(r"(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(:[a-z,]+)?")
    matches = [volume.fullmatch(spec) for spec in service.get("volumes", [])]
    assert all(matches), service.get("volumes")
    return {match["target"]: match["source"] for match in matches}


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comment lines dropped, continuation lines joined."""
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if not line.lstrip().startswith("#")]
    instructions, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, args = current.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _dockerfile():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _dockerfile_args() -> dict[str, str]:
    """Default values of every ``ARG NAME=value`` in the Dockerfile."""
    return dict(args.split("=", 1) for keyword, args in _dockerfile()
                if keyword == "ARG" and "=" in args)


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return dict(dep.split("==", 1) for dep in project["dependencies"] if "==" in dep)


def _k8s_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [doc for doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def _rayjob() -> dict[str, Any]:
    return _one(_k8s_docs(RAYJOB_FILE), "RayJob")


def _ray_pod_specs() -> dict[str, dict[str, Any]]:
    """Group name ('head' or a worker group) -> pod spec of the RayJob's cluster."""
    cluster = _rayjob()["spec"]["rayClusterSpec"]
    pods = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    for group in cluster["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def _mounts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mount path -> volume, for the Ray container (the first) of a pod spec."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    return {mount["mountPath"]: volumes[mount["name"]]
            for mount in pod["containers"][0]["volumeMounts"]}


def _example_configs() -> dict[str, dict[str, Any]]:
    configmap = _one(_k8s_docs(RAYJOB_FILE), "ConfigMap")
    return {
        "docker/configs/search.yaml":
            yaml.safe_load((DOCKER / "configs" / "search.yaml").read_text(encoding="utf-8")),
        "ConfigMap search.yaml": yaml.safe_load(configmap["data"]["search.yaml"]),
    }


# --------------------------------------------------------------------------- compose


def test_compose_defines_the_cluster_services() -> None:
    services = _services()
    assert {"ray-head", "ray-worker", "mlflow", "postgres", "minio", "minio-init"} <= set(services)
    for name in RAY_NODES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile",
                                           "target": "autoft"}


def test_ray_workers_reserve_nvidia_gpus() -> None:
    devices = _services()["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in _services()["ray-head"], "the head runs the driver, not GPU trials"


def test_workers_join_the_head_and_both_block() -> None:
    services = _services()
    head = " ".join(_argv(services["ray-head"]["command"]))
    worker = " ".join(_argv(services["ray-worker"]["command"]))
    assert head.startswith("ray start --head") and "--port=6379" in head
    assert "--dashboard-host=0.0.0.0" in head and "--ray-client-server-port=10001" in head
    assert worker.startswith("ray start --address=ray-head:6379")
    assert head.endswith("--block") and worker.endswith("--block")


def test_ray_nodes_use_token_auth_with_the_token_from_a_compose_secret() -> None:
    compose = _compose()
    for name in RAY_NODES:
        node = compose["services"][name]
        env = node["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert "RAY_AUTH_TOKEN" not in env, f"{name}: the token itself must not be in the env"
        secret = env["RAY_AUTH_TOKEN_PATH"].removeprefix("/run/secrets/")
        assert env["RAY_AUTH_TOKEN_PATH"] == f"/run/secrets/{secret}" and secret in node["secrets"]
        assert "file" in compose["secrets"][secret], "the token comes from a file on the host"


def test_long_running_services_have_healthchecks_and_all_have_restart_policies() -> None:
    services = _services()
    for name in LONG_RUNNING:
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    for name, service in services.items():
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name


def test_every_published_port_is_bound_to_loopback() -> None:
    published = {}
    for name, service in _services().items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip, container = port.get("host_ip"), port["target"]
            else:
                parts = str(port).split("/")[0].split(":")
                host_ip, container = (parts[0] if len(parts) == 3 else None), parts[-1]
            assert host_ip == "127.0.0.1", f"{name}: {port} is not bound to 127.0.0.1"
            published[name, int(container)] = port
    assert {("ray-head", 8265), ("ray-head", 10001), ("mlflow", 5000)} <= set(published)


def test_mlflow_server_stores_runs_in_postgres_and_proxies_s3_artifacts() -> None:
    mlflow = _services()["mlflow"]
    argv = _argv(mlflow["command"])
    assert argv[:2] == ["mlflow", "server"]
    assert re.fullmatch(r"postgresql://mlflow:\$\{[^}]+\}@postgres:5432/mlflow",
                        _option(argv, "--backend-store-uri"))
    assert _option(argv, "--artifacts-destination").startswith("s3://")
    assert _option(argv, "--host") == "0.0.0.0"
    assert "mlflow:5000" in _option(argv, "--allowed-hosts").split(",")
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mlflow["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


def test_database_and_object_store_are_on_an_internal_network_the_ray_nodes_lack() -> None:
    compose = _compose()
    services = compose["services"]
    ray_networks = {net for name in RAY_NODES for net in services[name]["networks"]}
    for name in ("postgres", "minio", "minio-init"):
        networks = set(services[name]["networks"])
        assert networks and not networks & ray_networks, name
        assert all(compose["networks"][net].get("internal") for net in networks), name
    assert "ray" in services["mlflow"]["networks"], "the driver reaches MLflow"


def test_every_ray_node_mounts_the_same_data_and_results() -> None:
    compose = _compose()
    head, worker = (_volume_targets(compose["services"][name]) for name in RAY_NODES)
    for path in ("/data", "/results", "/configs"):
        assert head[path] == worker[path], f"{path} differs between head and worker"
    assert head["/results"] in compose["volumes"], "/results is a named volume every node shares"
    assert any(spec.endswith(":/data:ro") for spec in compose["services"]["ray-head"]["volumes"])


def test_compose_holds_no_secret_literal() -> None:
    for name, service in _services().items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use the mapping form"
        for key, value in environment.items():
            if SECRET_NAME.search(key) and not key.endswith("_PATH"):
                assert INTERPOLATION.match(str(value)), f"{name}: {key} is a literal"
    example = dict(line.split("=", 1) for line in
                   (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines()
                   if line and not line.startswith("#"))
    secrets = {key: value for key, value in example.items()
               if SECRET_NAME.search(key) and not key.endswith("_FILE")}
    assert secrets and all(value == "" for value in secrets.values()), secrets


def _compose_cli() -> str:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30).returncode != 0:
        pytest.skip("the Docker Compose v2 plugin is not installed (docker compose)")
    return docker


def test_docker_compose_config_accepts_the_file_and_requires_passwords(tmp_path: Path) -> None:
    docker = _compose_cli()
    token = tmp_path / "ray_auth_token"
    token.write_text("0" * 64, encoding="utf-8")
    settings = tmp_path / "settings.env"
    others = f"MINIO_ROOT_USER=u\nMINIO_ROOT_PASSWORD=pppppppp\nRAY_AUTH_TOKEN_FILE={token}\n"
    command = [docker, "compose", "-f", str(COMPOSE_FILE), "--env-file", str(settings),
               "config", "-q"]
    settings.write_text("POSTGRES_PASSWORD=p\n" + others, encoding="utf-8")
    accepted = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert accepted.returncode == 0, accepted.stderr
    settings.write_text(others, encoding="utf-8")  # no default password: compose refuses
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr


# --------------------------------------------------------------------------- Dockerfile


def test_images_run_as_a_non_root_user() -> None:
    runtime_stages = [stage for stage in _dockerfile_stages()
                      if any(keyword in ("CMD", "ENTRYPOINT") for keyword, _ in stage)]
    assert len(runtime_stages) == 2, "the autoft and mlflow images"
    for stage in runtime_stages:
        users = [args for keyword, args in stage if keyword == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), stage[0]


def test_image_installs_the_torch_pins_of_pyproject_on_cuda() -> None:
    pins, args = _pyproject_pins(), _dockerfile_args()
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    runs = [args for keyword, args in _dockerfile() if keyword == "RUN"]
    assert any('"torch==${TORCH_VERSION}"' in run and '"torchvision==${TORCHVISION_VERSION}"'
               in run for run in runs)
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:13.0")
    assert args["PYTHON_VERSION"] == "3.11"


def test_image_installs_the_project_and_ray_with_dashboard_and_client() -> None:
    runs = [args for keyword, args in _dockerfile() if keyword == "RUN"]
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", run) for run in runs)
    # ray[tune] alone has no job server, no dashboard and no Ray Client server.
    assert any('"ray[default,tune]==${RAY_VERSION}"' in run for run in runs)


def test_autoft_image_turns_on_ray_token_auth() -> None:
    """A container started from the image without compose or KubeRay still needs the token."""
    autoft_stage = next(stage for stage in _dockerfile_stages()
                        if stage[0][1].endswith(" AS autoft"))
    env = dict(token.split("=", 1) for keyword, args in autoft_stage if keyword == "ENV"
               for token in shlex.split(args))
    assert env.get("RAY_AUTH_MODE") == "token"


def test_dockerfile_bakes_no_secret() -> None:
    for keyword, args in _dockerfile():
        if keyword in ("ENV", "ARG"):
            names = [token.split("=", 1)[0] for token in shlex.split(args)]
            assert not any(SECRET_NAME.search(name) for name in names), args
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"secret|\.env\b", args), args


def test_build_context_allowlist_covers_what_the_dockerfile_copies() -> None:
    patterns = [line.strip() for line in
                (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allowlist: exclude everything first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert not allowed & {"docker", ".env", ".git", ".venv"}
    for keyword, args in _dockerfile():
        if keyword == "COPY" and "--from" not in args:
            sources = [token for token in shlex.split(args) if not token.startswith("--")][:-1]
            assert all(source.rstrip("/") in allowed for source in sources), args


# --------------------------------------------------------------------------- KubeRay


def test_kuberay_manifests_parse() -> None:
    kinds = {path.name: [doc["kind"] for doc in _k8s_docs(path)]
             for path in (RAYJOB_FILE, MLFLOW_K8S_FILE, STORAGE_K8S_FILE)}
    assert kinds == {
        "autoft-search.yaml": ["ConfigMap", "RayJob"],
        "mlflow.yaml": ["StatefulSet", "Service", "Deployment", "Service"],
        "storage.yaml": ["PersistentVolumeClaim", "PersistentVolumeClaim"],
    }


def test_rayjob_runs_the_search_from_the_configmap() -> None:
    rayjob = _rayjob()
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["spec"]["entrypoint"] == "autoft search /configs/search.yaml --address auto"
    configmap = _one(_k8s_docs(RAYJOB_FILE), "ConfigMap")
    configs = _mounts(_ray_pod_specs()["head"])["/configs"]
    assert configs["configMap"]["name"] == configmap["metadata"]["name"]
    assert "search.yaml" in configmap["data"]


def test_rayjob_has_a_gpu_worker_group() -> None:
    workers = {name: pod for name, pod in _ray_pod_specs().items() if name != "head"}
    gpus = [int(pod["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
            for pod in workers.values()]
    assert gpus and max(gpus) >= 1


def test_rayjob_takes_the_token_from_a_kubernetes_secret() -> None:
    cluster = _rayjob()["spec"]["rayClusterSpec"]
    secret = cluster["authOptions"]["secretName"]
    assert cluster["authOptions"]["mode"] == "token"
    for group, pod in _ray_pod_specs().items():
        env = {item["name"]: item for item in pod["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", group
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": secret, "key": "auth_token"}, group


def test_rayjob_nodes_share_data_and_results_volumes() -> None:
    claims = {doc["metadata"]["name"]: doc["spec"]["accessModes"]
              for doc in _k8s_docs(STORAGE_K8S_FILE)}
    for group, pod in _ray_pod_specs().items():
        mounts = _mounts(pod)
        for path in ("/data", "/results"):
            claim = mounts[path]["persistentVolumeClaim"]["claimName"]
            assert claims[claim] == ["ReadWriteMany"], f"{group}: {path}"


def test_kubernetes_manifests_hold_no_secret_literal() -> None:
    for path in (RAYJOB_FILE, MLFLOW_K8S_FILE, STORAGE_K8S_FILE):
        docs = _k8s_docs(path)
        assert "Secret" not in {doc["kind"] for doc in docs}, "Secrets are created with kubectl"
        for doc in docs:
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                for item in container.get("env", []):
                    if SECRET_NAME.search(item["name"]):
                        assert "secretKeyRef" in item.get("valueFrom", {}), item["name"]


def test_in_cluster_mlflow_serves_the_tracking_uri_of_the_rayjob() -> None:
    docs = _k8s_docs(MLFLOW_K8S_FILE)
    service = next(doc for doc in docs if doc["kind"] == "Service"
                   and doc["metadata"]["name"] == "mlflow")
    assert [port["port"] for port in service["spec"]["ports"]] == [5000]
    server = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    argv = server["command"]
    assert _option(argv, "--backend-store-uri").startswith("postgresql://")
    assert "mlflow:5000" in _option(argv, "--allowed-hosts").split(",")
    config = _example_configs()["ConfigMap search.yaml"]
    assert config["tracking"]["uri"] == "http://mlflow:5000"


# --------------------------------------------------------------------------- example configs


@pytest.mark.parametrize("name", ["docker/configs/search.yaml", "ConfigMap search.yaml"])
def test_example_cluster_configs_are_valid_autoft_configs(name: str) -> None:
    from autoft.tuning.driver import load_search_space

    raw = _example_configs()[name]
    config = Config.model_validate(raw)
    assert str(config.storage) == "/results" and config.ray.address == "auto"
    assert config.tracking.uri == "http://mlflow:5000"
    assert all(str(path).startswith("/data/") for path in (config.data.train, config.data.eval))
    assert raw["space"].startswith(IMAGE_SPACES)
    space_file = ROOT / "search_spaces" / raw["space"].removeprefix(IMAGE_SPACES)
    space = load_search_space(config.model_copy(update={"space": space_file}))
    assert space.names
