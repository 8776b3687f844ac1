"""deploy/ checked offline (no cluster, no Docker engine here): Kubernetes objects against the API's own JSON schemas
(kubernetes-validate, strict, oldest and newest versions it knows), KServe objects against the KServe SDK's generated
API models (every field name and type, required fields) and their containers as Pods against the API's schemas, the
references between them, every command line the manifests and the Dockerfile's two targets (cpu, gpu) give the image,
parsed by the real CLI, and each target's files laid out as the image has them, started (the gpu one on WebGPU, over
SwiftShader's Vulkan in place of NVIDIA's)."""

import copy
import importlib
import json
import os
import re
import shlex
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


# Each target of deploy/Dockerfile with its KServe runtime and InferenceService.
VARIANTS = {
    "cpu": ("kserve/servingruntime.yaml", "kserve/inferenceservice.yaml"),
    "gpu": ("kserve/servingruntime-gpu.yaml", "kserve/inferenceservice-gpu.yaml"),
}


@pytest.mark.parametrize("target", VARIANTS)
def test_kserve_objects_match_the_sdk_models_and_each_other(target):
    runtime = load(VARIANTS[target][0])[0]
    isvc = load(VARIANTS[target][1])[0]
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
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    gpus = [r["limits"].get("nvidia.com/gpu") for r in (container["resources"], model["resources"])]
    if target == "gpu":
        assert device == "webgpu"
        assert gpus == ["1", "1"], "the runtime and the InferenceService each ask for one GPU"
    else:
        assert device == "cpu" and gpus == [None, None]


def test_one_runtime_is_picked_for_the_format():
    """Both runtimes serve lisa-onnx/1; KServe picks an auto-selected one for an InferenceService that names none."""
    auto = [
        load(VARIANTS[t][0])[0]["metadata"]["name"]
        for t in VARIANTS
        if any(f.get("autoSelect") for f in load(VARIANTS[t][0])[0]["spec"]["supportedModelFormats"])
    ]
    assert auto == ["reason-segment"]


@pytest.mark.parametrize("target", VARIANTS)
def test_the_runtime_containers_pass_the_pod_schema_strictly(target):
    """KServe's CRDs are not in the Kubernetes schemas, but their containers are core/v1 Containers: each runtime's
    container, with the InferenceService's resources as KServe merges them, checked as a Pod's."""
    runtime = load(VARIANTS[target][0])[0]
    isvc = load(VARIANTS[target][1])[0]
    container = copy.deepcopy(runtime["spec"]["containers"][0])
    container["resources"] = isvc["spec"]["predictor"]["model"]["resources"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": runtime["metadata"]["name"]},
        "spec": {"containers": [container], "volumes": runtime["spec"]["volumes"]},
    }
    kubernetes_validate.validate(pod, kubernetes_validate.utils.latest_version(), strict=True)
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["resource"] = bad["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.utils.latest_version(), strict=True)
    # The schema takes any string as a quantity; the API server parses them (its grammar, without exponents).
    for kind in ("requests", "limits"):
        for name, value in container["resources"].get(kind, {}).items():
            assert re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?", value), f"{kind}.{name}: {value!r}"


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


def dockerfile_stages():
    """Each stage by name: (the stage it starts from, its instructions as (instruction, arguments) pairs with
    continuation lines joined), in the file's order."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", rest.strip())
            assert m, f"FROM {rest}: every stage is named"
            stages[m.group(2)] = (m.group(1), [])
            current = stages[m.group(2)][1]
        current.append((op, rest.strip()))
    return stages


def target_instructions(target):
    """A target's instructions, those of the stages it starts from first."""
    stages = dockerfile_stages()
    base, own = stages[target]
    return (target_instructions(base) if base in stages else []) + own


def dockerfile_command(target):
    ops = target_instructions(target)
    entry = json.loads([rest for op, rest in ops if op == "ENTRYPOINT"][-1])
    cmd = json.loads([rest for op, rest in ops if op == "CMD"][-1])
    return entry, cmd


def test_the_targets_are_cpu_by_default_and_gpu_on_webgpu():
    stages = dockerfile_stages()
    assert list(stages)[-1] == "cpu", "docker build without --target builds the last stage: the CPU image"
    entry, cpu = dockerfile_command("cpu")
    assert dockerfile_command("gpu") == (entry, [*cpu, "--device", "webgpu"])
    assert "--allow-fallback" not in cpu


def test_the_gpu_target_gets_vulkan_from_the_nvidia_toolkit():
    ops = target_instructions("gpu")
    env = dict(
        kv.split("=", 1) for rest in (rest for op, rest in ops if op == "ENV") for kv in shlex.split(rest) if "=" in kv
    )
    # The toolkit mounts the driver's Vulkan ICD only for the graphics capability.
    assert set(env["NVIDIA_DRIVER_CAPABILITIES"].split(",")) >= {"graphics", "compute", "utility"}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    installs = [rest for op, rest in stages_own("gpu") if op == "RUN" and "apt-get install" in rest]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("apt-get install", 1)[1].split("&&")[0])
    packages = [w for w in words if not w.startswith("-")]
    assert "libvulkan1" in packages, "Dawn (the WebGPU provider) loads libvulkan.so.1"
    # The image's base is Debian bookworm, like this machine and CI: the packages exist there.
    assert dockerfile_stages()["runtime"][0].endswith("-bookworm-slim")
    if shutil.which("apt-cache") is None:
        pytest.fail("apt-cache is missing: this check needs a Debian machine")
    for name in packages:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", name], capture_output=True, text=True)
        assert r.returncode == 0 and f"Package: {name}" in r.stdout, f"{name}: not a Debian package here ({r.stderr})"
    users = [rest for op, rest in ops if op == "USER"]
    assert users[-1] == "node", "the server does not run as root"


def stages_own(target):
    return dockerfile_stages()[target][1]


def run_cli(args):
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `npm run build` first")
    return subprocess.run(["node", str(CLI), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target", VARIANTS)
def test_every_command_line_given_to_the_image_is_accepted_by_the_cli(tmp_path, target):
    """Each command line, with its paths pointing at nothing, gets past option parsing (exit 2 would be a usage error)
    and stops at the first missing file with a one-line message."""
    entry, cmd = dockerfile_command(target)
    assert entry == ["node", "/app/out/src/host/cli.js"]
    runtime_args = load(VARIANTS[target][0])[0]["spec"]["containers"][0]["args"]
    assert runtime_args[: len(cmd) - 2] == cmd[:-2] and runtime_args[len(cmd) - 2 : len(cmd)] == cmd[-2:], (
        "the runtime starts what the image's CMD starts, with more settings"
    )
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


def test_the_build_context_holds_what_the_dockerfile_copies():
    allowed = [
        line[1:] for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    for _, stage in dockerfile_stages().values():
        for op, rest in stage:
            if op == "COPY" and not rest.startswith("--from"):
                for src in rest.split()[:-1]:
                    src = src.rstrip("/")
                    assert any(src == a or a == f"{src}/**" for a in allowed), f"COPY {src}: not in the build context"
                    assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"


def swiftshader_env():
    """The environment that puts a process's Vulkan on SwiftShader (Debian's chromium ships it), or None."""
    for d in (Path("/usr/lib/chromium"), Path("/usr/lib/chromium-browser")):
        if all((d / f).exists() for f in ("libvulkan.so.1", "libvk_swiftshader.so", "vk_swiftshader_icd.json")):
            ld = os.environ.get("LD_LIBRARY_PATH")
            return {
                **os.environ,
                "VK_ICD_FILENAMES": str(d / "vk_swiftshader_icd.json"),
                "LD_LIBRARY_PATH": f"{d}:{ld}" if ld else str(d),
            }
    return None


@pytest.mark.parametrize("target", VARIANTS)
def test_the_image_layout_serves(tmp_path, target):
    """The target's files laid out as the image has them (the build stage's outputs taken from this checkout's build),
    started with the image's entrypoint and the device its CMD names: the host finds everything it reads at run time.
    The gpu target's WebGPU provider runs on SwiftShader's Vulkan here, the ICD the loader is pointed at standing in
    for the one the NVIDIA Container Toolkit mounts."""
    ops = target_instructions(target)
    workdir = Path([rest for op, rest in ops if op == "WORKDIR"][-1])
    root = tmp_path / "image"
    for op, rest in ops:
        if op != "COPY":
            continue
        parts = rest.split()
        from_build = parts[0].startswith("--from")
        src, dest = parts[-2], parts[-1]
        source = REPO / (src.removeprefix("/src/") if from_build else src)
        target_path = root / workdir.relative_to("/") / dest
        if dest.endswith("/"):
            target_path = target_path / source.name
        target_path.parent.mkdir(parents=True, exist_ok=True)
        # Copies, so that paths the host derives from its own files (__dirname) stay inside the layout; the
        # dependencies are linked (node resolves them from the copied files' folders).
        if source.name == "node_modules":
            target_path.symlink_to(source, target_is_directory=True)
        elif source.is_dir():
            shutil.copytree(source, target_path)
        else:
            shutil.copy2(source, target_path)
    entry, cmd = dockerfile_command(target)
    cli = root / Path(entry[1]).relative_to("/")
    if not (REPO / "out" / "src" / "host" / "cli.js").exists():
        pytest.fail("run `npm run build` first")
    device = cmd[cmd.index("--device") + 1] if "--device" in cmd else "cpu"
    env = dict(os.environ)
    if device == "webgpu":
        env = swiftshader_env()
        if env is None:
            why = "SwiftShader's Vulkan ICD is not in /usr/lib/chromium: apt-get install -y chromium"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
    bundle = REPO / "test" / "fixtures" / "bundles" / "tiny-7b"
    proc = subprocess.Popen(
        [entry[0], str(cli), "serve", "--model", str(bundle), "--port", "0", "--device", device],
        cwd=root,
        env=env,
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
        assert re.search(rf"\bon {device}\b", said), f"the model did not load on {device}: {said}"
        port = int(re.search(r":(\d+)/v2", line).group(1))
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10) as r:
            assert json.loads(r.read()) == {"ready": True}
    finally:
        proc.terminate()
        proc.wait(30)
