"""deploy/kubernetes/: the KubeRay manifests, checked offline.

Each custom resource's `spec` is validated against the OpenAPI schema of KubeRay v1.7.0's CRD
(../shared/kuberay, skipped with a reason where absent), with unknown fields refused as
`kubectl apply`'s strict field validation refuses them; the RayService's Serve config is
validated with Ray's own Serve schema and serve/config.yaml's import path and settings; the
RayJob's entrypoint commands parse with colorize's own parser and hand the experiment to the
training and the model to the RayService; every Ray pod runs the colorize image and mounts
the shared volume, and nothing is pip-installed at start; token authentication is on
everywhere. (That the images and rayVersion are the Dockerfile's: tests/test_dockerfile.py.)
"""

from __future__ import annotations

import copy
import functools
import importlib
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CRDS = ROOT.parent / "shared" / "kuberay"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}


def documents() -> list[dict]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def resource(kind: str) -> dict:
    found = [d for d in documents() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {MANIFESTS}"
    return found[0]


def cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec" if doc["kind"] == "RayJob" else "rayClusterConfig"]


def strict(schema):
    """The schema with additionalProperties: false wherever properties are listed (and the
    schema does not say otherwise), as the API server refuses unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def spec_validator(kind: str):
    path = CRDS / CRD_FILES[kind]
    if not path.is_file():
        pytest.skip(f"KubeRay CRDs not found at {CRDS} (only beside a development clone)")
    return _validator(path)


@functools.cache
def _validator(path: Path):
    import jsonschema

    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("kind", ["RayJob", "RayService"])
def test_manifest_spec_is_valid_against_the_kuberay_crd(kind):
    doc = resource(kind)
    assert doc["apiVersion"] == "ray.io/v1"
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in spec_validator(kind).iter_errors(doc["spec"])]
    assert errors == []


def test_crd_validation_catches_typos_and_wrong_types():
    validator = spec_validator("RayService")
    broken = copy.deepcopy(resource("RayService")["spec"])
    broken["rayClusterConfig"]["authOptions"]["mdoe"] = "token"  # a typo
    assert any("mdoe" in e.message for e in validator.iter_errors(broken))
    broken = copy.deepcopy(resource("RayService")["spec"])
    broken["rayClusterConfig"]["authOptions"]["mode"] = "on"  # not one of disabled, token
    assert list(validator.iter_errors(broken))
    broken = copy.deepcopy(resource("RayJob")["spec"])
    broken["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] = "many"
    assert list(spec_validator("RayJob").iter_errors(broken))


@pytest.mark.parametrize("kind", ["RayJob", "RayService"])
def test_token_auth_colorize_image_and_shared_storage_on_every_pod(kind):
    spec = cluster_spec(resource(kind))
    assert spec["authOptions"] == {"mode": "token", "secretName": "colorize-ray-token"}
    version = spec["rayVersion"]
    assert tuple(int(x) for x in version.split(".")[:2]) >= (2, 52)  # token auth needs 2.52+
    claim = resource("PersistentVolumeClaim")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes share it
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"].rsplit("/", 1)[-1].startswith("colorize:")
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volume = volumes[mounts["/mnt/shared"]]
            assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def colorize_commands(entrypoint: str) -> list[list[str]]:
    """`colorize ARGS && colorize ARGS ...` -> the argument lists (nothing else allowed)."""
    commands = []
    for part in entrypoint.split("&&"):
        words = shlex.split(part)
        assert words[0] == "colorize", f"not a colorize command: {part!r}"
        commands.append(words[1:])
    return commands


def test_rayjob_tunes_then_trains_with_arguments_colorize_accepts():
    from colorize.cli import build_parser

    job = resource("RayJob")["spec"]
    tune_args, train_args = colorize_commands(job["entrypoint"])
    parser = build_parser()
    tune = parser.parse_args(tune_args)  # argparse exits (test fails) on a bad argument
    train = parser.parse_args(train_args)
    assert (tune.command, train.command) == ("tune", "train")
    assert tune.address == train.address == "auto"  # the RayJob's cluster, not a new Ray
    assert Path(train.experiment) == Path(tune.storage) / tune.name
    data = tune.data if isinstance(tune.data, list) else [tune.data]  # one folder or several
    for path in (*data, tune.storage, train.out):
        assert str(path).startswith("/mnt/shared/")
    served = yaml.safe_load(resource("RayService")["spec"]["serveConfigV2"])
    assert served["applications"][0]["args"]["model_dir"] == str(Path(train.out) / "model")

    runtime_env = yaml.safe_load(job["runtimeEnvYAML"])
    assert not {"pip", "uv", "conda"} & set(runtime_env)  # colorize is in the image
    assert runtime_env["env_vars"]["COLORIZE_CACHE"].startswith("/mnt/shared/")


def test_rayservice_serve_config_passes_ray_serve_schema_and_colorize_settings():
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    from colorize.serve.settings import Settings

    config = yaml.safe_load(resource("RayService")["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    ServeApplicationSchema.model_validate(app)
    template = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())["applications"][0]
    assert app["import_path"] == template["import_path"]  # the app's builder, as the code names it
    module, _, attribute = app["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    settings = Settings.from_dict(app["args"])
    assert settings.max_replicas > settings.min_replicas >= 1  # autoscaling replicas
    assert settings.ingress_replicas >= 2  # no single HTTP process in front of the model
    assert not {"pip", "uv", "conda"} & set(app.get("runtime_env", {}))  # in the image


def test_serve_schema_refuses_a_broken_serve_config():
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(resource("RayService")["spec"]["serveConfigV2"])
    config["applications"].append(copy.deepcopy(config["applications"][0]))  # same name twice
    with pytest.raises(ValidationError, match="multiple configs"):
        ServeDeploySchema.model_validate(config)
    config["applications"].pop()
    config["applications"][0]["args"] = ["model_dir"]  # args must be a mapping
    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(config)
