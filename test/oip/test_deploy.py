"""deploy/ checked offline (no cluster, no Docker engine here): Kubernetes objects against the API's own JSON schemas
(kubernetes-validate, strict, oldest and newest versions it knows), KServe objects against the KServe SDK's generated
API models (every field name and type, required fields), the references between them, and every command line the
manifests and the Dockerfile give the image, parsed by the real CLI."""

import copy
import importlib
import json
import re
import shutil
import site
import subprocess
import sys
import types
from pathlib import Path

import kubernetes.client.models as k8s_models
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CLI = REPO / "out" / "src" / "host" / "cli.js"


def load(rel):
    return [d for d in yaml.safe_load_all((DEPLOY / rel).read_text()) if d]


def kserve_models():
    """The SDK's generated models without the kserve package's __init__ (which starts its model server's imports)."""
    if "kserve.models" not in sys.modules:
        for sp in site.getsitepackages():
            if (Path(sp) / "kserve").is_dir():
                pkg = types.ModuleType("kserve")
                pkg.__path__ = [str(Path(sp) / "kserve")]
                sys.modules["kserve"] = pkg
    return importlib.import_module("kserve.models")


def model_class(name):
    km = kserve_models()
    return getattr(km, name, None) or getattr(k8s_models, name)


PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def build(type_name, value, at):
    """Builds the SDK object for a YAML value, refusing unknown fields and wrong types; the models refuse missing
    required fields themselves."""
    if type_name == "object":
        return value
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        assert ok, f"{at}: expected {type_name}, got {value!r}"
        return value
    m = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if m:
        assert isinstance(value, list), f"{at}: expected a list"
        return [build(m.group(1), v, f"{at}[{i}]") for i, v in enumerate(value)]
    m = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name)
    if m:
        assert isinstance(value, dict), f"{at}: expected a map"
        return {k: build(m.group(1) or m.group(2), v, f"{at}.{k}") for k, v in value.items()}
    cls = model_class(type_name)
    assert isinstance(value, dict), f"{at}: expected an object ({type_name})"
    by_json = {j: a for a, j in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        assert key in by_json, f"{at}: {type_name} has no field {key!r}"
        attr = by_json[key]
        kwargs[attr] = build(cls.openapi_types[attr], v, f"{at}.{key}")
    return cls(**kwargs)


def check_kserve(doc):
    api, model = {
        "ServingRuntime": ("serving.kserve.io/v1alpha1", "V1alpha1ServingRuntime"),
        "InferenceService": ("serving.kserve.io/v1beta1", "V1beta1InferenceService"),
    }[doc["kind"]]
    assert doc["apiVersion"] == api
    return build(model, doc, doc["kind"])


# backoffLimitPerIndex (a shard retried on its own) is beta, on by default, from Kubernetes 1.29 (GA in 1.33).
MIN_KUBERNETES = [1, 29]


def test_kubernetes_objects_pass_the_api_schemas_strictly():
    versions = [
        v for v in kubernetes_validate.utils.all_versions() if [int(x) for x in v.split(".")[:2]] >= MIN_KUBERNETES
    ]
    assert len(versions) >= 2
    docs = load("batch/job.yaml") + load("batch/merge-job.yaml")
    assert {d["kind"] for d in docs} == {"ConfigMap", "Job"}
    for version in versions:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_is_not_vacuous():
    job = load("batch/job.yaml")[1]
    bad = copy.deepcopy(job)
    bad["spec"]["completionsMode"] = bad["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.utils.latest_version(), strict=True)
    runtime = load("kserve/servingruntime.yaml")[0]
    for mutate, message in [
        (lambda r: r["spec"].__setitem__("protocolVersion", ["v2"]), "no field 'protocolVersion'"),
        (lambda r: r["spec"]["containers"][0]["ports"][0].__setitem__("containerPort", "8080"), "expected int"),
        (lambda r: r["spec"]["containers"][0].pop("name"), "name"),
    ]:
        broken = copy.deepcopy(runtime)
        mutate(broken)
        with pytest.raises((AssertionError, ValueError), match=message):
            check_kserve(broken)


def test_kserve_objects_match_the_sdk_models_and_each_other():
    runtime = load("kserve/servingruntime.yaml")[0]
    isvc = load("kserve/inferenceservice.yaml")[0]
    check_kserve(runtime)
    check_kserve(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert {"name": model["modelFormat"]["name"], "version": model["modelFormat"]["version"]} in [
        {"name": f["name"], "version": f.get("version")} for f in runtime["spec"]["supportedModelFormats"]
    ]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v2"]
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container", "KServe puts storage and resources on the container of that name"
    args = container["args"]
    port = int(args[args.index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert args[args.index("--model") + 1] == "/mnt/models", "where KServe's storage initializer puts storageUri"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    token = args[args.index("--token-file") + 1]
    mount = next(m for m in container["volumeMounts"] if token.startswith(m["mountPath"] + "/"))
    volume = next(v for v in runtime["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "reason-segment-tokens"


def test_the_indexed_job_shards_match_its_completions_and_the_merge():
    config, job = load("batch/job.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    args = container["args"]
    assert args[args.index("--shard") + 1] == f"$(SHARD)/{spec['completions']}"
    out = args[args.index("--out") + 1]
    merge = load("batch/merge-job.yaml")[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert re.sub(r"\$\(SHARD\)", "*", out) in merge.split()
    assert Path(args[args.index("--prompt-file") + 1]).name in config["data"]


def dockerfile_command():
    text = (DEPLOY / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    return entry, cmd


def run_cli(args):
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `npm run build` first")
    return subprocess.run(["node", str(CLI), *args], capture_output=True, text=True, timeout=60)


def test_every_command_line_given_to_the_image_is_accepted_by_the_cli(tmp_path):
    """Each command line, with its paths pointing at nothing, gets past option parsing (exit 2 would be a usage error)
    and stops at the first missing file with a one-line message."""
    entry, cmd = dockerfile_command()
    assert entry == ["node", "/app/out/src/host/cli.js"]
    runtime_args = load("kserve/servingruntime.yaml")[0]["spec"]["containers"][0]["args"]
    assert runtime_args[: len(cmd)] == cmd, "the runtime starts what the image's CMD starts, with more settings"
    job_args = load("batch/job.yaml")[1]["spec"]["template"]["spec"]["containers"][0]["args"]
    merge_cmd = load("batch/merge-job.yaml")[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1].split()
    assert merge_cmd[:3] == ["exec", "node", entry[1]]
    missing = str(tmp_path / "missing")
    prompt = tmp_path / "config" / "prompt.txt"
    prompt.parent.mkdir()
    prompt.write_text(load("batch/job.yaml")[0]["data"]["prompt.txt"])
    cases = [
        (runtime_args, r"--token-file \S+ cannot be read \(ENOENT\)"),
        ([a.replace("$(SHARD)", "0") for a in job_args], r"--images \S+ cannot be read \(ENOENT\)"),
        (merge_cmd[3:-1] + [missing], r"cannot be read \(ENOENT\)"),
    ]
    for args, message in cases:
        # Paths point into the temporary folder: the prompt file exists there, nothing else does.
        args = [
            str(tmp_path) + a if a.startswith("/config/") else missing + a if a.startswith("/") else a for a in args
        ]
        r = run_cli(args)
        assert r.returncode == 1, (args, r.stderr)
        assert re.search(message, r.stderr), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def dockerfile_stages():
    """Each stage's instructions as (instruction, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op == "FROM":
            stages.append([])
        stages[-1].append((op, rest.strip()))
    return stages


def test_the_build_context_holds_what_the_dockerfile_copies():
    allowed = [
        line[1:] for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    for stage in dockerfile_stages():
        for op, rest in stage:
            if op == "COPY" and not rest.startswith("--from"):
                for src in rest.split()[:-1]:
                    src = src.rstrip("/")
                    assert any(src == a or a == f"{src}/**" for a in allowed), f"COPY {src}: not in the build context"
                    assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"


def test_the_image_layout_serves(tmp_path):
    """The runtime stage's files laid out as the image has them (the build stage's outputs taken from this checkout's
    build), started with the image's entrypoint: the host finds everything it reads at run time."""
    stage = dockerfile_stages()[-1]
    workdir = Path(next(rest for op, rest in stage if op == "WORKDIR"))
    root = tmp_path / "image"
    for op, rest in stage:
        if op != "COPY":
            continue
        parts = rest.split()
        from_build = parts[0].startswith("--from")
        src, dest = parts[-2], parts[-1]
        source = REPO / (src.removeprefix("/src/") if from_build else src)
        target = root / workdir.relative_to("/") / dest
        if dest.endswith("/"):
            target = target / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copies, so that paths the host derives from its own files (__dirname) stay inside the layout; the
        # dependencies are linked (node resolves them from the copied files' folders).
        if source.name == "node_modules":
            target.symlink_to(source, target_is_directory=True)
        elif source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    entry, _ = dockerfile_command()
    cli = root / Path(entry[1]).relative_to("/")
    if not (REPO / "out" / "src" / "host" / "cli.js").exists():
        pytest.fail("run `npm run build` first")
    bundle = REPO / "test" / "fixtures" / "bundles" / "tiny-7b"
    proc = subprocess.Popen(
        [entry[0], str(cli), "serve", "--model", str(bundle), "--port", "0"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line, said = "", ""
        while "serving" not in line:
            line = proc.stderr.readline()
            said += line
            assert line, f"the server exited before serving: {said}"
        port = int(re.search(r":(\d+)/v2", line).group(1))
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10) as r:
            assert json.loads(r.read()) == {"ready": True}
    finally:
        proc.terminate()
        proc.wait(30)
