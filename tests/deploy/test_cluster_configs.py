"""cluster/, the Dockerfile and .dockerignore agree with each other and with the project.

One image (``refinery:<version in pyproject.toml>``) and one Ray version everywhere; every
``refinery`` command they run parses with the real CLI and names a spec under jobs/; Ray's
CPU counts match the pods' requests; requests fit their limits; the refresh schedule is a
valid cron; credentials come from IRSA or instance profiles, never from the files.

Each check is a function that returns the problems it finds. The tests run it on the
files as committed (no problems) and on a copy with one thing broken (the problem named).
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from pipeline.cli import build_parser
from tests.helpers import REPO

ROOT = REPO
CLUSTER = ROOT / "cluster"
JOBS = ROOT / "jobs"
IMAGE_DIR = "/app/jobs/"  # where the Dockerfile puts jobs/
KUBECTL_IMAGE = re.compile(r"^registry\.k8s\.io/kubectl:v\d+\.\d+\.\d+$")
# refinery:<tag>, from a registry or not (e.g. <account>.dkr.ecr.<region>.amazonaws.com/refinery:0.1.0).
IMAGE = re.compile(r"^(?:[\w.-]+(?::\d+)?(?:/[\w.-]+)*/)?refinery:(?P<tag>[\w.+-]+)$")
# vCPUs of the EC2 instance types aws.yaml uses.
INSTANCE_VCPUS = {"m6i.2xlarge": 8, "m6i.4xlarge": 16}


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Files:
    pyproject: dict[str, Any]
    dockerfile: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuation lines joined
    dockerignore: list[str]
    manifests: dict[str, list[dict]]  # Kubernetes documents per cluster/*.yaml file
    aws: dict[str, Any]
    readme: str
    texts: dict[str, str]  # every file checked for secrets and addresses


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    instructions = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def load_files() -> Files:
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in sorted(CLUSTER.iterdir()) if p.is_file()}
    for name in ("Dockerfile", ".dockerignore"):
        texts[name] = (ROOT / name).read_text()
    for spec in sorted(JOBS.glob("*.yaml")):
        texts[str(spec.relative_to(ROOT))] = spec.read_text()
    manifests = {}
    aws: dict[str, Any] = {}
    for path in sorted(CLUSTER.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        if path.name == "aws.yaml":
            (aws,) = docs
        else:
            manifests[path.name] = docs
    return Files(
        pyproject=tomllib.loads((ROOT / "pyproject.toml").read_text()),
        dockerfile=dockerfile_instructions(texts["Dockerfile"]),
        dockerignore=[
            line.strip() for line in texts[".dockerignore"].splitlines() if line.strip() and not line.startswith("#")
        ],
        manifests=manifests,
        aws=aws,
        readme=texts["cluster/README.md"],
        texts=texts,
    )


_FILES = load_files()


@pytest.fixture
def files() -> Files:
    return copy.deepcopy(_FILES)


def version(files: Files) -> str:
    return files.pyproject["project"]["version"]


def documents(files: Files, kind: str) -> Iterator[tuple[str, dict]]:
    for name, docs in files.manifests.items():
        for doc in docs:
            if doc.get("kind") == kind:
                yield f"{name} {kind} {doc['metadata']['name']}", doc


def ray_cluster_specs(files: Files) -> Iterator[tuple[str, dict]]:
    for where, doc in documents(files, "RayCluster"):
        yield where, doc["spec"]
    for where, doc in documents(files, "RayJob"):
        yield where, doc["spec"]["rayClusterSpec"]


def ray_groups(files: Files) -> Iterator[tuple[str, dict, bool]]:
    """Every head and worker group: (where, group, is_head)."""
    for where, spec in ray_cluster_specs(files):
        yield f"{where} head", spec["headGroupSpec"], True
        for group in spec.get("workerGroupSpecs", []):
            yield f"{where} worker group {group['groupName']}", group, False


def pod_specs(files: Files) -> Iterator[tuple[str, dict]]:
    for where, group, _ in ray_groups(files):
        yield where, group["template"]["spec"]
    for where, doc in documents(files, "RayJob"):
        if "submitterPodTemplate" in doc["spec"]:
            yield f"{where} submitter", doc["spec"]["submitterPodTemplate"]["spec"]
    for where, doc in documents(files, "CronJob"):
        yield where, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", [])


def dockerfile_arg(files: Files, name: str) -> str | None:
    for keyword, rest in files.dockerfile:
        if keyword == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1].strip().strip('"')
    return None


# ---------------------------------------------------------------------------------------------
# Kubernetes quantities

_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def cpu_cores(quantity: Any) -> float:
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


def memory_bytes(quantity: Any) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGTPE]i?)?", str(quantity))
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])


# ---------------------------------------------------------------------------------------------
# The checks


def refinery_images(files: Files) -> list[tuple[str, str]]:
    found = [
        (f"{where} container {c['name']}", c.get("image", ""))
        for where, pod in pod_specs(files)
        for c in containers(pod)
        if not KUBECTL_IMAGE.match(c.get("image", ""))
    ]
    docker = files.aws.get("docker", {})
    found += [
        (f"cluster/aws.yaml docker.{key}", docker[key])
        for key in ("image", "head_image", "worker_image")
        if key in docker
    ]
    return found


def arn_accounts(files: Files) -> set[str]:
    """The AWS accounts that the IAM role and instance profile ARNs in cluster/ name."""
    return set(
        re.findall(
            r"arn:aws:iam::(\d{12}):",
            "\n".join(files.texts[n] for n in files.texts if n.startswith("cluster/") and n.endswith(".yaml")),
        )
    )


def check_images(files: Files) -> list[str]:
    """One image everywhere Refinery runs, tagged with the project version (the only other
    image is a pinned kubectl for the scheduler); an ECR image lives in the account and
    region that the IAM ARNs and aws.yaml name; every refinery:<tag> in any file has that tag."""
    problems = []
    images = refinery_images(files)
    for where, image in images:
        match = IMAGE.match(image)
        if not match or match.group("tag") != version(files):
            problems.append(f"{where}: image {image!r} is not refinery:{version(files)}")
    distinct = sorted({image for _, image in images})
    if len(distinct) != 1:
        problems.append(f"one image everywhere, found {distinct}")
    for image in distinct:
        ecr = re.match(r"(\d{12})\.dkr\.ecr\.([\w-]+)\.amazonaws\.com/", image)
        if ecr and (
            {ecr.group(1)} != arn_accounts(files) or ecr.group(2) != files.aws.get("provider", {}).get("region")
        ):
            problems.append(
                f"image {image!r}: its ECR account and region should be those of the IAM ARNs "
                f"{sorted(arn_accounts(files))} and of aws.yaml's provider.region"
            )
    for name, text in files.texts.items():
        for tag in re.findall(r"\brefinery:([0-9][\w.+-]*)", text):
            if tag != version(files):
                problems.append(f"{name}: names image refinery:{tag}, but the project is {version(files)}")
    return problems


def check_ray_version(files: Files) -> list[str]:
    """The Ray the Dockerfile installs satisfies pyproject's ray requirement, and every
    rayVersion and aws.yaml's setup check name it."""
    ray_version = dockerfile_arg(files, "RAY_VERSION")
    if ray_version is None:
        return ["Dockerfile: no ARG RAY_VERSION=..."]
    problems = []
    requirement = next(r for r in files.pyproject["project"]["dependencies"] if r.startswith("ray"))
    specifier = SpecifierSet(re.sub(r"^ray(\[[^\]]*\])?", "", requirement).split(";")[0].strip())
    if ray_version not in specifier:
        problems.append(f"Dockerfile RAY_VERSION {ray_version} does not satisfy pyproject's {requirement!r}")
    if not any(
        keyword == "RUN" and re.search(r'"ray(\[[\w,]+\])?==\$\{RAY_VERSION\}"', rest)
        for keyword, rest in files.dockerfile
    ):
        problems.append('Dockerfile: no RUN installs "ray==${RAY_VERSION}"')
    for where, spec in ray_cluster_specs(files):
        if str(spec.get("rayVersion")) != ray_version:
            problems.append(f"{where}: rayVersion {spec.get('rayVersion')!r}, the image has Ray {ray_version}")
    setup = " ".join(files.aws.get("setup_commands", []))
    if f"('{version(files)}', '{ray_version}')" not in setup:
        problems.append(
            f"cluster/aws.yaml setup_commands: no check for refinery {version(files)} and ray {ray_version}"
        )
    return problems


def spec_file(job: str) -> Path | None:
    """The file in jobs/ that a spec path in a command names (/app/jobs/X in the image)."""
    if job.startswith(IMAGE_DIR):
        return JOBS / job[len(IMAGE_DIR) :]
    if job.startswith("jobs/"):
        return ROOT / job
    return None


def refinery_command_problems(argv: list[str], where: str) -> list[str]:
    shown = shlex.join(["refinery", *argv])
    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help
                return []
            last = (errors.getvalue().strip().splitlines() or ["?"])[-1]
            return [f"{where}: `{shown}` does not parse: {last}"]
    job = getattr(args, "job", None)
    if job is not None:
        path = spec_file(job)
        if path is None or not path.is_file():
            return [f"{where}: `{shown}` names {job!r}, which is no spec file in jobs/"]
    return []


def refinery_invocations(command: str) -> Iterator[list[str]]:
    """The argv of each refinery run in a shell command line: refinery as the command word
    (after VAR=value assignments), after `--` (`ray job submit ... -- refinery ...`), or after
    the image in `docker run ... IMAGE refinery ...`."""
    for segment in re.split(r"&&|\|\||[;|]", command):
        try:
            tokens = shlex.split(segment, comments=True)
        except ValueError:
            continue
        for i, token in enumerate(tokens):
            if token.rsplit("/", 1)[-1] != "refinery":
                continue
            before = tokens[:i]
            if all(re.fullmatch(r"\w+=.*", t) for t in before) or before[-1] == "--" or IMAGE.match(before[-1]):
                yield tokens[i + 1 :]
                break


def readme_commands(readme: str) -> Iterator[str]:
    in_block, current = False, ""
    for line in readme.splitlines():
        if line.startswith("```"):
            in_block, current = not in_block, ""
            continue
        if not in_block:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        yield current + line
        current = ""


def refinery_commands(files: Files) -> list[tuple[str, list[str]]]:
    found = []
    for where, doc in documents(files, "RayJob"):
        for argv in refinery_invocations(doc["spec"]["entrypoint"]):
            found.append((f"{where} entrypoint", argv))
    for where, pod in pod_specs(files):
        for container in containers(pod):
            for argv in refinery_invocations(shlex.join(container.get("command", []) + container.get("args", []))):
                found.append((f"{where} container {container['name']}", argv))
    for keyword, rest in files.dockerfile:
        if keyword in ("CMD", "ENTRYPOINT"):
            for argv in refinery_invocations(shlex.join(json.loads(rest))):
                found.append((f"Dockerfile {keyword}", argv))
    for key, value in files.aws.items():
        if key.endswith("_commands"):
            for command in value:
                for argv in refinery_invocations(command):
                    found.append((f"cluster/aws.yaml {key}", argv))
    for line in readme_commands(files.readme):
        for argv in refinery_invocations(line):
            found.append(("cluster/README.md", argv))
    return found


def check_refinery_commands(files: Files) -> list[str]:
    """Every refinery command in the files parses with the CLI and names an existing spec;
    the RayJob joins its cluster with --address auto."""
    problems = []
    for where, argv in refinery_commands(files):
        problems += refinery_command_problems(argv, where)
    for where, doc in documents(files, "RayJob"):
        argv = next(refinery_invocations(doc["spec"]["entrypoint"]), [])
        if argv[:1] != ["run"] or "--address" not in argv or argv[argv.index("--address") + 1 :][:1] != ["auto"]:
            problems.append(f"{where}: entrypoint should be `refinery run {IMAGE_DIR}<spec>.yaml --address auto`")
    return problems


def check_resources(files: Files) -> list[str]:
    """Requests at most the limits everywhere; Ray containers request exactly their limits
    (Ray counts resources from limits; Guaranteed pods are evicted last)."""
    problems = []
    ray_containers = {id(group["template"]["spec"]["containers"][0]) for _, group, _ in ray_groups(files)}
    pods = list(pod_specs(files))
    resources = [
        (f"{where} container {c['name']}", c.get("resources"), id(c) in ray_containers)
        for where, pod in pods
        for c in containers(pod)
    ]
    resources += [
        (f"{where} autoscaler", spec.get("autoscalerOptions", {}).get("resources"), False)
        for where, spec in ray_cluster_specs(files)
        if spec.get("enableInTreeAutoscaling")
    ]
    for where, res, is_ray in resources:
        if not res or "requests" not in res or "limits" not in res:
            problems.append(f"{where}: set both resources.requests and resources.limits")
            continue
        for name, parse in (("cpu", cpu_cores), ("memory", memory_bytes)):
            if name not in res["requests"] or name not in res["limits"]:
                problems.append(f"{where}: no {name} request or limit")
                continue
            request, limit = parse(res["requests"][name]), parse(res["limits"][name])
            if request > limit:
                problems.append(
                    f"{where}: {name} request {res['requests'][name]} exceeds its limit {res['limits'][name]}"
                )
            elif is_ray and request != limit:
                problems.append(f"{where}: a Ray container's {name} request should equal its limit")
    return problems


def check_ray_start_params(files: Files) -> list[str]:
    """num-cpus equals the Ray container's CPU request (the head may say 0 to keep tasks off
    it); the object store fits the memory-backed /dev/shm, which fits the pod's memory."""
    problems = []
    for where, group, is_head in ray_groups(files):
        params = group.get("rayStartParams", {})
        pod = group["template"]["spec"]
        ray_container = pod["containers"][0]
        request = cpu_cores(ray_container["resources"]["requests"]["cpu"])
        if "num-cpus" not in params:
            problems.append(f"{where}: set rayStartParams num-cpus")
        else:
            num_cpus = float(params["num-cpus"])
            if num_cpus != request and not (is_head and num_cpus == 0):
                problems.append(
                    f"{where}: rayStartParams num-cpus {params['num-cpus']} but the container "
                    f"requests {ray_container['resources']['requests']['cpu']} CPUs"
                )
        mounts = {m["name"]: m["mountPath"] for m in ray_container.get("volumeMounts", [])}
        shm = [
            v
            for v in pod.get("volumes", [])
            if mounts.get(v["name"]) == "/dev/shm" and v.get("emptyDir", {}).get("medium") == "Memory"
        ]
        if not shm:
            problems.append(f"{where}: mount a memory-backed emptyDir at /dev/shm for the object store")
            continue
        shm_bytes = memory_bytes(shm[0]["emptyDir"].get("sizeLimit", "0"))
        memory_limit = memory_bytes(ray_container["resources"]["limits"]["memory"])
        store = int(params.get("object-store-memory", 0))
        if not 0 < store <= shm_bytes:
            problems.append(f"{where}: object-store-memory {store} must be set and fit /dev/shm ({shm_bytes} bytes)")
        if shm_bytes > memory_limit // 2:
            problems.append(f"{where}: /dev/shm of {shm_bytes} bytes takes more than half the pod's memory")
    return problems


def check_scaling(files: Files) -> list[str]:
    """Worker groups: 0 <= minReplicas <= replicas <= maxReplicas, maxReplicas >= 1; a RayJob
    keeps maxReplicas x num-cpus tasks in flight; aws.yaml's node types within the cluster's
    max_workers."""
    problems = []
    for where, group, is_head in ray_groups(files):
        if is_head:
            continue
        low, start, high = group.get("minReplicas"), group.get("replicas"), group.get("maxReplicas")
        if None in (low, start, high) or not 0 <= low <= start <= high or high < 1:
            problems.append(
                f"{where}: needs 0 <= minReplicas ({low}) <= replicas ({start}) <= maxReplicas ({high}), "
                "maxReplicas >= 1"
            )
    for where, doc in documents(files, "RayJob"):
        argv = next(refinery_invocations(doc["spec"]["entrypoint"]), [])
        sets = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv[:-1]) if arg == "--set")
        most = sum(
            int(g["maxReplicas"]) * int(g["rayStartParams"]["num-cpus"])
            for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        )
        if sets.get("ray.max_parallel_tasks") != str(most):
            problems.append(
                f"{where}: the entrypoint should set ray.max_parallel_tasks={most} (maxReplicas x "
                f"num-cpus), so that queued tasks grow the cluster; it sets "
                f"{sets.get('ray.max_parallel_tasks')}"
            )
    for name, node_type in files.aws.get("available_node_types", {}).items():
        if name == files.aws.get("head_node_type"):
            continue
        low, high = node_type.get("min_workers", 0), node_type.get("max_workers")
        if high is None or not 0 <= low <= high <= files.aws.get("max_workers", 0) or high < 1:
            problems.append(
                f"cluster/aws.yaml {name}: needs 0 <= min_workers ({low}) <= max_workers ({high}) "
                f"<= the cluster's max_workers ({files.aws.get('max_workers')})"
            )
    return problems


_CRON_FIELDS = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}),
    ("day of week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
]


def cron_problems(expression: str) -> list[str]:
    fields = expression.split()
    if len(fields) != 5:
        return [f"schedule {expression!r} has {len(fields)} fields, not 5"]
    problems = []
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in text.split(","):
            base, slash, step = part.partition("/")
            if slash and not (step.isdigit() and int(step) > 0):
                problems.append(f"schedule {expression!r}: bad step in the {name} field")
            if base == "*":
                continue
            bounds = base.split("-")
            values = [names[b.upper()] if b.upper() in names else int(b) if b.isdigit() else None for b in bounds]
            if (
                len(bounds) > 2
                or None in values
                or not all(low <= v <= high for v in values)
                or (len(values) == 2 and values[0] > values[1])
            ):
                problems.append(f"schedule {expression!r}: {part!r} is not a valid {name} ({low}-{high})")
    return problems


def kubectl_argv(container: dict) -> list[str]:
    return container.get("command", []) + container.get("args", [])


def check_cronjob(files: Files) -> list[str]:
    """The refresh CronJob: a valid 5-field schedule; no overlapping refreshes; its steps
    replace, create and wait for the RayJob that cluster/rayjob.yaml defines, from the
    ConfigMap the README creates, with exactly the RBAC they need."""
    ((rayjob_where, rayjob),) = documents(files, "RayJob")
    name = rayjob["metadata"]["name"]
    cronjobs = list(documents(files, "CronJob"))
    if not cronjobs:
        return ["no CronJob in cluster/"]
    problems = []
    for where, cron in cronjobs:
        spec = cron["spec"]
        problems += [f"{where}: {p}" for p in cron_problems(spec["schedule"])]
        job = spec["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        if spec.get("concurrencyPolicy") != "Forbid":
            problems.append(f"{where}: concurrencyPolicy must be Forbid (two refreshes would share one output)")
        if job.get("backoffLimit") != 0 or pod.get("restartPolicy") != "Never":
            problems.append(
                f"{where}: backoffLimit 0 and restartPolicy Never: a retried pod would delete the refresh it started"
            )
        steps = [kubectl_argv(c) for c in pod.get("initContainers", [])] + [kubectl_argv(c) for c in pod["containers"]]
        verbs = [s[0] for s in steps if s]
        if verbs != ["delete", "create", "wait"]:
            problems.append(f"{where}: steps {verbs}, expected delete, create, wait")
            continue
        delete, create, wait = steps
        if delete[1:3] != ["rayjob", name] or f"rayjob/{name}" != wait[1]:
            problems.append(f"{where}: the steps must delete and wait for rayjob {name} ({rayjob_where})")
        mounts = {m["mountPath"]: m["name"] for c in containers(pod) for m in c.get("volumeMounts", [])}
        filename = next((a.split("=", 1)[1] for a in create if a.startswith("--filename=")), "")
        directory, _, key = filename.rpartition("/")
        volume = next((v for v in pod.get("volumes", []) if v["name"] == mounts.get(directory)), None)
        config_map = (volume or {}).get("configMap", {})
        if not any(item["path"] == key for item in config_map.get("items", [])):
            problems.append(f"{where}: create reads {filename!r}, which no ConfigMap volume provides")
        else:
            item_key = next(item["key"] for item in config_map["items"] if item["path"] == key)
            command = f"kubectl create configmap {config_map['name']} --from-file={item_key}=cluster/rayjob.yaml"
            if command not in " ".join(files.readme.split()):
                problems.append(f"{where}: cluster/README.md must show `{command}`")
        timeout = next((int(a.split("=", 1)[1].rstrip("s")) for a in wait if a.startswith("--timeout=")), 0)
        deadline = rayjob["spec"].get("activeDeadlineSeconds", 0)
        if not deadline < timeout < job.get("activeDeadlineSeconds", 0):
            problems.append(
                f"{where}: need RayJob activeDeadlineSeconds ({deadline}) < wait --timeout ({timeout}) "
                f"< the Job's activeDeadlineSeconds ({job.get('activeDeadlineSeconds')})"
            )
        images = {c["image"] for c in containers(pod)}
        if len(images) != 1 or not KUBECTL_IMAGE.match(images.pop()):
            problems.append(f"{where}: every step should run one pinned registry.k8s.io/kubectl image")
        problems += rbac_problems(files, where, pod.get("serviceAccountName"), {"delete", "create", "get", "watch"})
    return problems


def rbac_problems(files: Files, where: str, account: str | None, verbs: set[str]) -> list[str]:
    roles = {doc["metadata"]["name"]: doc for _, doc in documents(files, "Role")}
    granted: set[str] = set()
    for _, binding in documents(files, "RoleBinding"):
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == account for s in binding.get("subjects", [])):
            role = roles.get(binding["roleRef"]["name"], {})
            for rule in role.get("rules", []):
                if "ray.io" in rule.get("apiGroups", []) and "rayjobs" in rule.get("resources", []):
                    granted |= set(rule.get("verbs", []))
    if not any(doc["metadata"]["name"] == account for _, doc in documents(files, "ServiceAccount")):
        return [f"{where}: service account {account!r} is not defined in cluster/"]
    missing = verbs - granted
    return [f"{where}: service account {account!r} may not {', '.join(sorted(missing))} rayjobs"] if missing else []


def check_irsa(files: Files) -> list[str]:
    """Ray pods run as a service account with an IRSA role annotation; no container carries
    AWS key variables."""
    problems = []
    accounts = {doc["metadata"]["name"]: doc for _, doc in documents(files, "ServiceAccount")}
    for where, group, _ in ray_groups(files):
        account = group["template"]["spec"].get("serviceAccountName")
        annotations = accounts.get(account, {}).get("metadata", {}).get("annotations", {})
        if not re.fullmatch(
            r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", annotations.get("eks.amazonaws.com/role-arn", "")
        ):
            problems.append(f"{where}: service account {account!r} has no eks.amazonaws.com/role-arn annotation")
    for where, pod in pod_specs(files):
        for container in containers(pod):
            for env in container.get("env", []):
                if env["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                    problems.append(f"{where} container {container['name']}: sets {env['name']}")
    return problems


def check_dockerfile(files: Files) -> list[str]:
    """python:<requires-python>-slim; `pip install` of the project without extras; jobs/ in
    /app/jobs; WORKDIR /app; the tools KubeRay and `ray up` call; refinery as the command;
    nothing fetched from a URL."""
    problems = []
    requires = SpecifierSet(files.pyproject["project"]["requires-python"])
    bases = [rest.split()[0] for keyword, rest in files.dockerfile if keyword == "FROM"]
    if not bases:
        problems.append("Dockerfile: no FROM")
    for base in bases:
        match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?", base)
        if not match or match.group(1) not in requires:
            problems.append(f"Dockerfile: FROM {base}, expected python:X.Y-slim with X.Y in requires-python {requires}")
    copies = {}
    for keyword, rest in files.dockerfile:
        if keyword == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            for source in parts[:-1]:
                copies[source] = parts[-1]
    project_dir = copies.get("pyproject.toml", "").rstrip("/")
    if not project_dir or copies.get("pipeline", "").rstrip("/") != f"{project_dir}/pipeline":
        problems.append("Dockerfile: copy pyproject.toml and pipeline/ into one directory")
    runs = [rest for keyword, rest in files.dockerfile if keyword == "RUN"]
    installs = [r for r in runs if re.search(rf"pip install [^&]*(?<=\s){re.escape(project_dir or '.')}(?=\s|$)", r)]
    if not installs:
        problems.append(f"Dockerfile: no RUN pip install {project_dir or '.'}")
    if any("[dev]" in r or ".[" in r for r in installs):
        problems.append("Dockerfile: install the project without extras (no dev dependencies)")
    if copies.get("jobs", "").rstrip("/") != IMAGE_DIR.rstrip("/"):
        problems.append(f"Dockerfile: COPY jobs {IMAGE_DIR.rstrip('/')}")
    if ("WORKDIR", "/app") not in files.dockerfile:
        problems.append("Dockerfile: WORKDIR /app")
    for tool in ("wget", "rsync", "openssh-client"):
        if not any(re.search(rf"apt-get install [^&]*\b{tool}\b", r) for r in runs):
            problems.append(f"Dockerfile: install {tool} (KubeRay's probes use wget; `ray up` uses rsync and ssh)")
    commands = [json.loads(rest) for keyword, rest in files.dockerfile if keyword in ("CMD", "ENTRYPOINT")]
    if not commands or commands[-1][:1] != ["refinery"]:
        problems.append("Dockerfile: the command should be refinery")
    if any(keyword == "ENTRYPOINT" for keyword, _ in files.dockerfile):
        problems.append("Dockerfile: no ENTRYPOINT: `ray up` starts the container with `bash` as its command")
    if any(re.search(r"https?://", rest) for keyword, rest in files.dockerfile if keyword in ("RUN", "ADD")):
        problems.append("Dockerfile: fetches a URL; models are mounted or read from S3, never baked in or downloaded")
    if "models" in copies or any(source.startswith("models") for source in copies):
        problems.append("Dockerfile: copies models into the image")
    return problems


def check_dockerignore(files: Files) -> list[str]:
    required = [".git", ".venv", "out", "data", "models", "benchmarks/.venv-*"]
    return [f".dockerignore: add {entry}" for entry in required if entry not in files.dockerignore]


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def start_num_cpus(commands: list[str]) -> float | None:
    found = re.findall(r"--num-cpus[= ](\d+)", " ".join(commands))
    return float(found[-1]) if found else None


def check_aws(files: Files) -> list[str]:
    """aws.yaml: valid under Ray's own cluster schema; instance profiles on every node type
    and no credentials; CPUs consistent between node types, instance types and `ray start`;
    the ECR login in the provider's region."""
    import jsonschema

    config = files.aws
    problems = []
    try:
        jsonschema.validate(config, ray_schema())
    except jsonschema.ValidationError as exc:
        problems.append(f"cluster/aws.yaml: not a valid Ray cluster config: {exc.message}")
    text = json.dumps(config).lower()
    for word in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "secretaccesskey"):
        if word in text:
            problems.append(f"cluster/aws.yaml: contains {word}: use the instance profile")
    if config.get("provider", {}).get("type") != "aws":
        problems.append("cluster/aws.yaml: provider.type should be aws")
    node_types = config.get("available_node_types", {})
    if config.get("head_node_type") not in node_types:
        problems.append(f"cluster/aws.yaml: head_node_type {config.get('head_node_type')!r} is not a node type")
    for name, node_type in node_types.items():
        node = node_type.get("node_config", {})
        profile = node.get("IamInstanceProfile", {})
        if not (
            re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/[\w+=,.@/-]+", profile.get("Arn", ""))
            or profile.get("Name")
        ):
            problems.append(f"cluster/aws.yaml {name}: no IamInstanceProfile (Arn or Name): nodes need it for S3")
        cpus = node_type.get("resources", {}).get("CPU")
        vcpus = INSTANCE_VCPUS.get(node.get("InstanceType"))
        if vcpus is None:
            problems.append(
                f"cluster/aws.yaml {name}: instance type {node.get('InstanceType')!r} not in INSTANCE_VCPUS"
            )
        elif cpus is None or cpus > vcpus:
            problems.append(
                f"cluster/aws.yaml {name}: resources.CPU {cpus} must be set, at most the {vcpus} vCPUs "
                f"of {node.get('InstanceType')}"
            )
        key = "head_start_ray_commands" if name == config.get("head_node_type") else "worker_start_ray_commands"
        started = start_num_cpus(config.get(key, []))
        if cpus is not None and started != cpus:
            problems.append(
                f"cluster/aws.yaml {name}: resources.CPU {cpus}, but {key} start Ray with --num-cpus {started}"
            )
    if (
        len([n for n in node_types if n != config.get("head_node_type")]) > 1
        and start_num_cpus(config.get("worker_start_ray_commands", [])) is not None
    ):
        problems.append("cluster/aws.yaml: one --num-cpus in worker_start_ray_commands cannot fit several worker types")
    region = config.get("provider", {}).get("region")
    init = " ".join(config.get("initialization_commands", []))
    for found in re.findall(r"--region (\S+)|\.dkr\.ecr\.([\w-]+)\.amazonaws\.com", init):
        if region not in found:
            problems.append(f"cluster/aws.yaml initialization_commands: ECR in {found}, provider.region is {region}")
    return problems


_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def check_no_secrets_or_addresses(files: Files) -> list[str]:
    """No file holds an AWS key (id or secret-shaped string) or a non-loopback IP address."""
    problems = []
    for name, text in files.texts.items():
        for match in _AWS_KEY_ID.finditer(text):
            problems.append(f"{name}: an AWS access key id ({match.group()[:4]}...)")
        for match in _AWS_SECRET.finditer(text):
            if (
                re.search(r"[A-Z]", match.group())
                and re.search(r"[a-z]", match.group())
                and re.search(r"\d", match.group())
            ):
                problems.append(f"{name}: a 40-character secret-shaped string ({match.group()[:4]}...)")
        for match in _IPV4.finditer(text):
            if all(0 <= int(part) <= 255 for part in match.groups()):
                if not ipaddress.ip_address(match.group()).is_loopback:
                    problems.append(f"{name}: a non-loopback address {match.group()}")
    return problems


def check_readme(files: Files) -> list[str]:
    """cluster/README.md documents every file here, the laptop commands and what it said before."""
    problems = []
    for name in sorted(files.texts):
        if (
            name.startswith("cluster/")
            and name != "cluster/README.md"
            and name.removeprefix("cluster/") not in files.readme
        ):
            problems.append(f"cluster/README.md does not document {name}")
    for phrase in (
        "Dockerfile",
        ".dockerignore",
        "tests/jobs/test_multinode.py",
        "--address auto",
        "refinery submit",
        "refinery status",
        "refinery logs",
        "refinery stop",
        "docker build -t",
    ):
        if phrase not in files.readme:
            problems.append(f"cluster/README.md does not mention {phrase!r}")
    return problems


CHECKS: list[Callable[[Files], list[str]]] = [
    check_images,
    check_ray_version,
    check_refinery_commands,
    check_resources,
    check_ray_start_params,
    check_scaling,
    check_cronjob,
    check_irsa,
    check_dockerfile,
    check_dockerignore,
    check_aws,
    check_no_secrets_or_addresses,
    check_readme,
]


# ---------------------------------------------------------------------------------------------
# The committed files pass every check


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_committed_files_pass(check, files):
    assert check(files) == []


def test_the_files_hold_what_the_checks_read(files):
    """The checks look at real content: the kinds, groups and commands they iterate exist."""
    kinds = sorted(doc["kind"] for docs in files.manifests.values() for doc in docs)
    assert kinds == ["CronJob", "RayCluster", "RayJob", "Role", "RoleBinding", "ServiceAccount", "ServiceAccount"]
    assert len(list(ray_groups(files))) == 4
    commands = refinery_commands(files)
    wheres = {where.split(" ")[0] for where, _ in commands}
    assert {"rayjob.yaml", "Dockerfile", "cluster/README.md"} <= wheres
    assert (
        "rayjob.yaml RayJob refinery-cc-refresh entrypoint",
        ["run", "/app/jobs/cc_refresh.yaml", "--address", "auto", "--set", "ray.max_parallel_tasks=224"],
    ) in commands


# ---------------------------------------------------------------------------------------------
# A file with one thing wrong fails the check that owns it


def _rayjob(files: Files) -> dict:
    return next(doc for _, doc in documents(files, "RayJob"))


def _worker(files: Files) -> dict:
    return _rayjob(files)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def _cron(files: Files) -> dict:
    return next(doc for _, doc in documents(files, "CronJob"))


def _cron_pod(files: Files) -> dict:
    return _cron(files)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _set_dockerfile(files: Files, keyword: str, old: str, new: str) -> None:
    files.dockerfile = [(k, rest.replace(old, new) if k == keyword else rest) for k, rest in files.dockerfile]


def _set(obj: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    obj[int(keys[-1]) if isinstance(obj, list) else keys[-1]] = value


BREAKAGES = [
    (
        "worker image tag",
        check_images,
        "/refinery:0.0.9' is not refinery:0.1.0",
        lambda f: _set(
            _worker(f),
            "template.spec.containers.0.image",
            _worker(f)["template"]["spec"]["containers"][0]["image"].replace(":0.1.0", ":0.0.9"),
        ),
    ),
    (
        "aws image",
        check_images,
        "cluster/aws.yaml docker.image: image 'rayproject/ray:2.59.0'",
        lambda f: _set(f.aws, "docker.image", "rayproject/ray:2.59.0"),
    ),
    (
        "two images",
        check_images,
        "one image everywhere",
        lambda f: _set(_rayjob(f), "spec.submitterPodTemplate.spec.containers.0.image", "refinery:0.1.0"),
    ),
    (
        "ECR account",
        check_images,
        "its ECR account and region",
        lambda f: f.texts.__setitem__(
            "cluster/serviceaccount.yaml",
            f.texts["cluster/serviceaccount.yaml"].replace("111122223333", "444455556666"),
        ),
    ),
    (
        "README tag",
        check_images,
        "names image refinery:0.2.0",
        lambda f: f.texts.__setitem__(
            "cluster/README.md", f.texts["cluster/README.md"] + "\ndocker push refinery:0.2.0\n"
        ),
    ),
    (
        "rayVersion",
        check_ray_version,
        "rayVersion '2.58.0'",
        lambda f: _set(_rayjob(f), "spec.rayClusterSpec.rayVersion", "2.58.0"),
    ),
    (
        "Ray outside pyproject's range",
        check_ray_version,
        "does not satisfy",
        lambda f: _set_dockerfile(f, "ARG", "RAY_VERSION=2.59.0", "RAY_VERSION=3.0.0"),
    ),
    (
        "unknown subcommand",
        check_refinery_commands,
        "does not parse",
        lambda f: _set(_rayjob(f), "spec.entrypoint", "refinery launch /app/jobs/cc_refresh.yaml --address auto"),
    ),
    (
        "bad option",
        check_refinery_commands,
        "does not parse",
        lambda f: _set(_rayjob(f), "spec.entrypoint", "refinery run /app/jobs/cc_refresh.yaml --adress auto"),
    ),
    (
        "missing spec",
        check_refinery_commands,
        "no spec file in jobs/",
        lambda f: _set(_rayjob(f), "spec.entrypoint", "refinery run /app/jobs/cc_nightly.yaml --address auto"),
    ),
    (
        "no --address",
        check_refinery_commands,
        "--address auto",
        lambda f: _set(_rayjob(f), "spec.entrypoint", "refinery run /app/jobs/cc_refresh.yaml"),
    ),
    (
        "README command",
        check_refinery_commands,
        "cluster/README.md: `refinery validate jobs/nope.yaml`",
        lambda f: setattr(f, "readme", f.readme + "\n```bash\nrefinery validate jobs/nope.yaml\n```\n"),
    ),
    (
        "request over limit",
        check_resources,
        "cpu request 16 exceeds its limit 14",
        lambda f: _set(_worker(f), "template.spec.containers.0.resources.requests.cpu", "16"),
    ),
    (
        "submitter memory",
        check_resources,
        "memory request 2Gi exceeds its limit 1Gi",
        lambda f: _set(_rayjob(f), "spec.submitterPodTemplate.spec.containers.0.resources.requests.memory", "2Gi"),
    ),
    (
        "Ray request below limit",
        check_resources,
        "should equal its limit",
        lambda f: _set(_worker(f), "template.spec.containers.0.resources.requests.memory", "50Gi"),
    ),
    (
        "num-cpus",
        check_ray_start_params,
        "num-cpus 16 but the container requests 14",
        lambda f: _set(_worker(f), "rayStartParams.num-cpus", "16"),
    ),
    (
        "object store over /dev/shm",
        check_ray_start_params,
        "must be set and fit /dev/shm",
        lambda f: _set(_worker(f), "rayStartParams.object-store-memory", str(32 * 2**30)),
    ),
    (
        "no /dev/shm",
        check_ray_start_params,
        "memory-backed emptyDir at /dev/shm",
        lambda f: _set(_worker(f), "template.spec.volumes", []),
    ),
    ("min over max", check_scaling, "minReplicas (20)", lambda f: _set(_worker(f), "minReplicas", 20)),
    (
        "task concurrency below the autoscaler's reach",
        check_scaling,
        "ray.max_parallel_tasks=224",
        lambda f: (
            _set(_worker(f), "maxReplicas", 16)
            or _set(_rayjob(f), "spec.entrypoint", _rayjob(f)["spec"]["entrypoint"].replace("=224", "=112"))
        ),
    ),
    (
        "aws min over max",
        check_scaling,
        "min_workers (40)",
        lambda f: f.aws["available_node_types"]["ray.worker.cpu"].__setitem__("min_workers", 40),
    ),
    (
        "cron minute",
        check_cronjob,
        "'61' is not a valid minute",
        lambda f: _set(_cron(f), "spec.schedule", "61 3 * * 1"),
    ),
    ("cron fields", check_cronjob, "has 6 fields", lambda f: _set(_cron(f), "spec.schedule", "0 0 3 * * 1")),
    (
        "cron overlap",
        check_cronjob,
        "concurrencyPolicy must be Forbid",
        lambda f: _set(_cron(f), "spec.concurrencyPolicy", "Allow"),
    ),
    (
        "cron retries",
        check_cronjob,
        "backoffLimit 0",
        lambda f: _set(_cron(f), "spec.jobTemplate.spec.backoffLimit", 3),
    ),
    (
        "cron waits for another job",
        check_cronjob,
        "delete and wait for rayjob refinery-cc-refresh",
        lambda f: _set(_cron_pod(f), "containers.0.args.1", "rayjob/other"),
    ),
    (
        "cron RBAC",
        check_cronjob,
        "may not delete",
        lambda f: next(d for _, d in documents(f, "Role"))["rules"][0]["verbs"].remove("delete"),
    ),
    (
        "cron ConfigMap",
        check_cronjob,
        "cluster/README.md must show",
        lambda f: _set(_cron_pod(f), "volumes.0.configMap.name", "another-configmap"),
    ),
    (
        "cron wait too short",
        check_cronjob,
        "< wait --timeout (3600)",
        lambda f: _set(_cron_pod(f), "containers.0.args.4", "--timeout=3600s"),
    ),
    (
        "IRSA annotation",
        check_irsa,
        "no eks.amazonaws.com/role-arn",
        lambda f: next(d for _, d in documents(f, "ServiceAccount") if d["metadata"]["name"] == "refinery")[
            "metadata"
        ].pop("annotations"),
    ),
    (
        "key in env",
        check_irsa,
        "sets AWS_SECRET_ACCESS_KEY",
        lambda f: (
            _worker(f)["template"]["spec"]["containers"][0]
            .setdefault("env", [])
            .append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"})
        ),
    ),
    (
        "python version",
        check_dockerfile,
        "FROM python:3.12-slim",
        lambda f: _set_dockerfile(f, "FROM", "python:3.11-slim", "python:3.12-slim"),
    ),
    (
        "dev extras",
        check_dockerfile,
        "without extras",
        lambda f: _set_dockerfile(
            f, "RUN", "pip install --no-cache-dir /src ", "pip install --no-cache-dir /src[dev] /src "
        ),
    ),
    ("no wget", check_dockerfile, "install wget", lambda f: _set_dockerfile(f, "RUN", "wget rsync", "rsync")),
    (
        "jobs elsewhere",
        check_dockerfile,
        "COPY jobs /app/jobs",
        lambda f: _set_dockerfile(f, "COPY", "/app/jobs", "/srv/jobs"),
    ),
    (
        "model download",
        check_dockerfile,
        "fetches a URL",
        lambda f: f.dockerfile.append(("RUN", "wget -q https://example.org/lid.176.bin -O /app/lid.176.bin")),
    ),
    ("entrypoint", check_dockerfile, "no ENTRYPOINT", lambda f: f.dockerfile.append(("ENTRYPOINT", '["refinery"]'))),
    (".dockerignore", check_dockerignore, "add models", lambda f: f.dockerignore.remove("models")),
    ("aws schema", check_aws, "not a valid Ray cluster config", lambda f: f.aws.__setitem__("min_worker", 2)),
    (
        "aws keys",
        check_aws,
        "contains aws_secret_access_key",
        lambda f: _set(f.aws, "provider.aws_secret_access_key", "x"),
    ),
    (
        "aws profile",
        check_aws,
        "no IamInstanceProfile",
        lambda f: f.aws["available_node_types"]["ray.worker.cpu"]["node_config"].pop("IamInstanceProfile"),
    ),
    (
        "aws CPUs",
        check_aws,
        "start Ray with --num-cpus 16.0",
        lambda f: f.aws["available_node_types"]["ray.worker.cpu"].__setitem__("resources", {"CPU": 8}),
    ),
    ("aws region", check_aws, "provider.region is eu-west-1", lambda f: _set(f.aws, "provider.region", "eu-west-1")),
    (
        "access key id",
        check_no_secrets_or_addresses,
        "an AWS access key id",
        lambda f: f.texts.__setitem__(
            "cluster/aws.yaml", f.texts["cluster/aws.yaml"] + "\n# AKIA" + "ABCDEFGHIJKLMNOP\n"
        ),
    ),
    (
        "secret key",
        check_no_secrets_or_addresses,
        "secret-shaped",
        lambda f: f.texts.__setitem__(
            "jobs/cc_refresh.yaml",
            f.texts["jobs/cc_refresh.yaml"] + "\n# " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY\n",
        ),
    ),
    (
        "private address",
        check_no_secrets_or_addresses,
        "non-loopback address 10.0.12.7",
        lambda f: f.texts.__setitem__("cluster/README.md", f.texts["cluster/README.md"] + "\nray://10.0.12.7:10001\n"),
    ),
    (
        "README coverage",
        check_readme,
        "does not document cluster/extra.yaml",
        lambda f: f.texts.__setitem__("cluster/extra.yaml", "kind: ConfigMap\n"),
    ),
]


@pytest.mark.parametrize("check, expected, breakage", [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_a_broken_copy_fails(check, expected, breakage, files):
    assert check(files) == []
    breakage(files)
    problems = check(files)
    assert any(expected in p for p in problems), problems


def test_loopback_addresses_and_versions_are_not_flagged(files):
    files.texts["cluster/README.md"] += (
        "\nrefinery submit jobs/cc_refresh.yaml --address http://127.0.0.1:8265\nray 2.59.0, python 3.11.7\n"
    )
    assert check_no_secrets_or_addresses(files) == []


def test_cron_validator():
    assert cron_problems("0 3 * * 1") == []
    assert cron_problems("*/15 0-6,22 1 JAN-JUN mon") == []
    assert cron_problems("0 24 * * *") and cron_problems("0 3 * 13 *") and cron_problems("0 3 * * 8")
    assert cron_problems("5-1 * * * *") and cron_problems("*/0 * * * *") and cron_problems("@weekly")
