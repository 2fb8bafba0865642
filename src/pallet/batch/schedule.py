"""`pallet batch schedule`: the files that run a batch job on a schedule, on engines teams already run.

No daemon of pallet's own: a crontab line (with its check), and a Kubernetes CronJob.
The crontab runs on this machine and keeps its paths; the CronJob runs in the bundle's
image, so it names no path of this machine: the store is the image's, and local files
(inputs, outputs, SQLite databases) live on a declared volume mounted at /data.
Neither file holds a password: a URL with one is read from an environment variable when the
job runs, which a Kubernetes Secret (or, for the crontab, a file of the user's) sets.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml

from pallet.batch.sources import normalize
from pallet.errors import PalletError

CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
MOUNT = "/data"                  # where the CronJob's volume is mounted
CLAIM = "pallet-batch-data"      # the PersistentVolumeClaim it mounts, unless told another
# Each location the job is given: the variable that carries it when its URL has a password, and its Secret key.
VARIABLES = {"input": "PALLET_BATCH_INPUT", "output": "PALLET_BATCH_OUTPUT", "index": "PALLET_DB_URL"}
SECRET_KEYS = {"input": "input", "output": "output", "index": "db"}
PLACEHOLDER = "PASSWORD"
FROM_ENV = re.compile(r"\$\(([A-Z][A-Z0-9_]*)\)")  # $(NAME): the value of a variable when the job runs


@dataclass
class Job:
    """Where one scheduled job reads and writes, on this machine (`here`) and in the CronJob (`there`).

    Roles are input, output and index (PALLET_DB_URL's database, when set). A URL with a password is
    `$(VARIABLE)` on both sides, and `secrets` holds it with the password as a placeholder."""

    name: str
    here: dict[str, str]
    there: dict[str, str]
    env: dict[str, str]                      # the crontab's variables
    cluster_env: dict[str, str | dict]       # the CronJob's: a value, or where to take it from (valueFrom)
    # (role, path here, path in the CronJob, path on the volume) for each local file
    files: list[tuple[str, str, str, str]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)            # role -> URL with PASSWORD in place

    @property
    def secret(self) -> str:
        """The Kubernetes Secret the CronJob takes the URLs with passwords from."""
        return _secret(self.name)

    @property
    def env_file(self) -> Path:
        """The file of the user's the crontab line reads those URLs from (export NAME='...' lines)."""
        return Path.home() / ".config" / "pallet" / f"{self.name}.env"

    def create_secret(self) -> str:
        """The command that makes the Secret, with each password left for the user to fill in."""
        return f"kubectl create secret generic {self.secret} " + " ".join(
            f"--from-literal={SECRET_KEYS[role]}={_quoted(url)}" for role, url in self.secrets.items())

    def env_lines(self) -> list[str]:
        return [f"export {VARIABLES[role]}={_quoted(url)}" for role, url in self.secrets.items()]


def plan(ref: str, input: str, output: str, *, workdir: Path, home: Path, image_store: str,
         db_url: str | None = None) -> Job:
    """The job's locations on both sides. Local paths are normalised (no '..'); on the volume a path
    under `workdir` keeps its relative path, any other is <its folder's name>/<its name>, and two
    locations that would meet on the volume but not here are refused."""
    name = job_name(ref)
    given = {"input": input, "output": output, **({"index": db_url} if db_url else {})}
    here, there, files, secrets = {}, {}, [], {}
    for role, spec in given.items():
        spec = _tidy(normalize(spec))
        if _has_password(spec):
            secrets[role] = _with_placeholder(spec)
            here[role] = there[role] = f"$({VARIABLES[role]})"
            continue
        here[role], there[role] = spec, in_volume(spec, workdir)
        if here[role] != there[role]:
            inside = _path_of(there[role])
            files.append((role, _path_of(spec), inside, str(PurePosixPath(inside).relative_to(MOUNT))))
    _refuse_meeting(files)
    env = {"PALLET_HOME": str(home), **({"PALLET_DB_URL": here["index"]} if db_url and "index" not in secrets else {})}
    cluster_env: dict[str, str | dict] = {"PALLET_HOME": image_store}
    for role in given:
        if role in secrets:
            cluster_env[VARIABLES[role]] = {"secretKeyRef": {"name": _secret(name), "key": SECRET_KEYS[role]}}
        elif role == "index":
            cluster_env["PALLET_DB_URL"] = there[role]
    return Job(name, here, there, env, cluster_env, files, secrets)


def in_volume(spec: str, workdir: Path) -> str:
    """Where a location is inside the job's container: a local path, or a SQLite file, moves onto the volume;
    other URLs (s3://, postgresql://...) stay as they are."""
    if "://" not in spec:
        return _on_volume(spec, workdir)
    if spec.startswith("sqlite:////"):
        path, sep, query = spec[len("sqlite:///"):].partition("?")
        return f"sqlite:///{_on_volume(path, workdir)}{sep}{query}"
    return spec


def _on_volume(path: str, workdir: Path) -> str:
    path = PurePosixPath(os.path.normpath(path))
    try:
        inside = path.relative_to(os.path.normpath(workdir))
    except ValueError:
        inside = PurePosixPath(path.parent.name, path.name)
    return str(PurePosixPath(MOUNT, inside))


def _tidy(spec: str) -> str:
    """A normalised location with its path's '..' and '.' resolved (the path need not exist yet)."""
    if "://" not in spec:
        return os.path.normpath(spec)
    if spec.startswith("sqlite:////"):
        path, sep, query = spec[len("sqlite:///"):].partition("?")
        return f"sqlite:///{os.path.normpath(path)}{sep}{query}"
    return spec


def _path_of(spec: str) -> str:
    return spec[len("sqlite:///"):].partition("?")[0] if spec.startswith("sqlite:///") else spec


def _secret(name: str) -> str:
    return f"{name}-urls"


def _refuse_meeting(files: list[tuple[str, str, str, str]]) -> None:
    """Refuse two local files that are apart here but one and the same (or one inside the other) on the volume."""
    def within(a: str, b: str) -> bool:
        return a == b or PurePosixPath(b) in PurePosixPath(a).parents

    for i, (role_a, here_a, there_a, _) in enumerate(files):
        for role_b, here_b, there_b, _ in files[i + 1:]:
            if within(there_a, there_b) != within(here_a, here_b) or within(there_b, there_a) != within(here_b, here_a):
                where = f"both be {there_a}" if there_a == there_b else f"be {there_a} and {there_b}"
                raise PalletError(f"the {role_a} {here_a} and the {role_b} {here_b} would {where} on the CronJob's "
                                  "volume; rename one, or run from a folder that holds both")


def _has_password(spec: str) -> bool:
    if "://" not in spec:
        return False
    user = urlsplit(spec).netloc.rpartition("@")[0]
    return ":" in user


def _quoted(text: str) -> str:
    """In single quotes always, so that a password typed in its place needs no escaping (but a quote)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _with_placeholder(spec: str) -> str:
    netloc = urlsplit(spec).netloc
    user, _, host = netloc.rpartition("@")
    return spec.replace(netloc, f"{user.partition(':')[0]}:{PLACEHOLDER}@{host}", 1)


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
            workdir: Path, env: dict[str, str], log: str, env_file: Path | None = None) -> str:
    """Two crontab lines: the run, and an hourly check whose non-zero exit cron mails (or your wrapper alerts).
    A location written $(NAME) is read from the variable NAME, which `env_file` sets when the line runs."""
    pallet = shlex.quote(str(Path(sys.executable).parent / "pallet"))
    prefix = (f"cd {shlex.quote(str(workdir))} && " + (f". {shlex.quote(str(env_file))} && " if env_file else "")
              + "".join(f"{k}={shlex.quote(v)} " for k, v in env.items()))

    def word(arg: str) -> str:
        variable = FROM_ENV.fullmatch(arg)
        return f'"${{{variable.group(1)}}}"' if variable else shlex.quote(arg)

    def line(schedule: str, args: list[str]) -> str:
        command = prefix + pallet + " " + " ".join(word(a) for a in args) + f" >> {shlex.quote(log)} 2>&1"
        return f"{schedule} {command.replace('%', chr(92) + '%')}"  # cron reads % as a newline

    return (f"# pallet batch: {ref} over {input} into {output}\n"
            f"{line(cron, run_args(ref, input, output, key, batch_size))}\n"
            f"{line('17 * * * *', check_args(output, max_age))}\n")


def cronjob(ref: str, input: str, output: str, *, cron: str, key: list[str], batch_size: int, max_age: str,
            name: str, image: str, env: dict[str, str | dict], claim: str = CLAIM) -> str:
    """A Kubernetes CronJob: one run at a time, retried with --resume, history kept for `kubectl get jobs`.
    Both jobs mount the PersistentVolumeClaim `claim` at /data, where local inputs and outputs belong.
    An `env` value is the variable's value, or a dict of where to take it from (a secretKeyRef); Kubernetes
    puts a variable's value in place of $(NAME) in the command."""
    variables = [{"name": k, **({"value": v} if isinstance(v, str) else {"valueFrom": v})} for k, v in env.items()]
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


def files(ref: str, job: Job, *, cron: str, key: list[str], batch_size: int, max_age: str, workdir: Path,
          image: str, claim: str = CLAIM) -> dict[str, str]:
    """crontab.txt for this machine and cronjob.yaml for a cluster, for the job `plan` made."""
    common = {"cron": cron, "key": key, "batch_size": batch_size, "max_age": max_age}
    return {
        "crontab.txt": crontab(ref, job.here["input"], job.here["output"], **common, workdir=workdir, env=job.env,
                               log=str(workdir / f"{job.name}.log"), env_file=job.env_file if job.secrets else None),
        "cronjob.yaml": cronjob(ref, job.there["input"], job.there["output"], **common, name=job.name, image=image,
                                env=job.cluster_env, claim=claim),
    }


def write(folder: Path, files: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written
