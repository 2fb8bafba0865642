"""`pallet batch schedule`: the files that run a batch job on a schedule, on engines teams already run.

No daemon of pallet's own: a crontab line (with its check), and a Kubernetes CronJob.
The crontab runs on this machine and keeps its paths; the CronJob runs in the bundle's
image, so it names no path of this machine: the store is the image's, and local files
(inputs, outputs, SQLite databases) live on a declared volume mounted at /data.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path, PurePosixPath

import yaml

from pallet.errors import PalletError

CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
IMAGE_STORE = "/app/store"       # PALLET_HOME in the bundle's image (its Dockerfile sets it)
MOUNT = "/data"                  # where the CronJob's volume is mounted
CLAIM = "pallet-batch-data"      # the PersistentVolumeClaim it mounts, unless told another


def in_volume(spec: str, workdir: Path) -> str:
    """Where a location is inside the job's container: a local path, or a SQLite file, moves onto the volume
    (its path under `workdir`, else its name); other URLs (s3://, postgresql://...) stay as they are."""
    if "://" not in spec:
        return _on_volume(Path(spec), workdir)
    if spec.startswith("sqlite:////"):
        path, sep, query = spec[len("sqlite:///"):].partition("?")
        return f"sqlite:///{_on_volume(Path(path), workdir)}{sep}{query}"
    return spec


def _on_volume(path: Path, workdir: Path) -> str:
    try:
        inside = path.relative_to(workdir)
    except ValueError:
        inside = Path(path.name)
    return str(PurePosixPath(MOUNT) / inside.as_posix())


def check_cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        raise PalletError(f"--cron '{expression}' is not a cron schedule of five fields, e.g. '0 2 * * *'")
    return " ".join(fields)


def run_args(ref: str, input: str, output: str, key: list[str], batch_size: int) -> list[str]:
    args = ["batch", "run", ref, "--input", input, "--output", output, "--batch-size", str(batch_size), "--resume"]
    for k in key:
        args += ["--key", k]
    return args


def check_args(output: str, max_age: str) -> list[str]:
    return ["batch", "check", "--output", output, "--max-age", max_age]


def crontab(ref: str, input: str, output: str, *, cron: str, key: list[str], batch_size: int, max_age: str,
            workdir: Path, env: dict[str, str], log: str) -> str:
    """Two crontab lines: the run, and an hourly check whose non-zero exit cron mails (or your wrapper alerts)."""
    pallet = shlex.quote(str(Path(sys.executable).parent / "pallet"))
    prefix = f"cd {shlex.quote(str(workdir))} && " + "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())

    def line(schedule: str, args: list[str]) -> str:
        command = prefix + pallet + " " + " ".join(shlex.quote(a) for a in args) + f" >> {shlex.quote(log)} 2>&1"
        return f"{schedule} {command.replace('%', chr(92) + '%')}"  # cron reads % as a newline

    return (f"# pallet batch: {ref} over {input} into {output}\n"
            f"{line(cron, run_args(ref, input, output, key, batch_size))}\n"
            f"{line('17 * * * *', check_args(output, max_age))}\n")


def cronjob(ref: str, input: str, output: str, *, cron: str, key: list[str], batch_size: int, max_age: str,
            name: str, image: str, env: dict[str, str], claim: str = CLAIM) -> str:
    """A Kubernetes CronJob: one run at a time, retried with --resume, history kept for `kubectl get jobs`.
    Both jobs mount the PersistentVolumeClaim `claim` at /data, where local inputs and outputs belong."""
    variables = [{"name": k, "value": v} for k, v in env.items()]
    mounts = [{"name": "data", "mountPath": MOUNT}]
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    container = {"name": "batch", "image": image, "command": ["pallet", *run_args(ref, input, output, key, batch_size)],
                 "env": variables, "volumeMounts": mounts,
                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}}
    check = {"name": "check", "image": image, "command": ["pallet", *check_args(output, max_age)], "env": variables,
             "volumeMounts": mounts}
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "pallet"}},
        "spec": {
            "schedule": cron,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {"spec": {"backoffLimit": 3, "template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [container],
                "volumes": volumes,
            }}}},
        },
    }
    checker = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"{name}-check", "labels": {"app.kubernetes.io/part-of": "pallet"}},
        "spec": {"schedule": "17 * * * *", "concurrencyPolicy": "Forbid",
                 "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                     "restartPolicy": "Never", "containers": [check], "volumes": volumes}}}}},
    }
    return yaml.safe_dump_all([manifest, checker], sort_keys=False)


def job_name(ref: str) -> str:
    """A CronJob name: lowercase, at most 52 characters with room for '-check', no dash at the end."""
    base = re.sub(r"[^a-z0-9-]+", "-", ref.lower()).strip("-")[:33].strip("-") or "model"
    return f"pallet-batch-{base}"


def check_text(**values: str) -> None:
    """Locations and references go into crontab lines: no control characters (a newline is a new line)."""
    for name, value in values.items():
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise PalletError(f"--{name} holds a control character; it cannot go into a crontab line")


def write(folder: Path, files: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


