"""Where a scheduled job's files go on the CronJob's volume, and how its passwords stay out of the files."""

import re
from pathlib import Path

import pytest
import yaml

from pallet.batch import schedule
from pallet.deploy.bundle import IMAGE_STORE, TEMPLATES
from pallet.errors import PalletError

WORK = Path("/work/project")


def _plan(input, output, db_url=None):
    return schedule.plan("digits@production", input, output, workdir=WORK, home=Path("/home/u/.pallet"),
                         image_store=IMAGE_STORE, db_url=db_url)


def test_paths_are_normalised_and_those_outside_the_folder_keep_their_folders_name():
    job = _plan("/work/project/./data/../in.csv", "/work/other/out")
    assert job.here == {"input": "/work/project/in.csv", "output": "/work/other/out"}
    assert job.there == {"input": "/data/in.csv", "output": "/data/other/out"}
    assert job.files == [("input", "/work/project/in.csv", "/data/in.csv", "in.csv"),
                         ("output", "/work/other/out", "/data/other/out", "other/out")]
    up = _plan("/work/project/../elsewhere/in.csv", "sqlite:////work/project/sub/../p.db?table=t")
    assert up.there == {"input": "/data/elsewhere/in.csv", "output": "sqlite:////data/p.db?table=t"}
    assert all(".." not in there for there in up.there.values())


def test_two_files_with_one_name_in_different_folders_stay_apart():
    job = _plan("/a/x.parquet", "/b/x.parquet")
    assert job.there == {"input": "/data/a/x.parquet", "output": "/data/b/x.parquet"}


@pytest.mark.parametrize("input, output", [
    ("/a/x/in.csv", "/b/x/in.csv"),               # one place on the volume
    ("/elsewhere/x/in.csv", "/work/project/x"),   # the input would land inside the output folder
])
def test_files_that_would_meet_on_the_volume_are_refused(input, output):
    with pytest.raises(PalletError, match="on the CronJob's volume; rename one"):
        _plan(input, output)


def test_one_file_given_twice_is_one_place_on_the_volume():
    job = _plan("sqlite:////work/project/app.db?table=features", "sqlite:////work/project/app.db?table=preds",
                db_url="sqlite:////work/project/app.db")
    assert job.cluster_env["PALLET_DB_URL"] == "sqlite:////data/app.db"
    assert job.there["output"] == "sqlite:////data/app.db?table=preds"


def test_urls_with_passwords_become_secret_references_with_a_placeholder():
    job = _plan("postgresql://reader:r%40d@db:5432/app?query=SELECT * FROM f", "s3://bucket/out",
                db_url="postgresql+psycopg://pallet:idx-pw@db/pallet")
    assert job.here["input"] == job.there["input"] == "$(PALLET_BATCH_INPUT)"
    assert job.there["output"] == "s3://bucket/out"  # no password: stays as given
    assert job.secrets == {"input": "postgresql://reader:PASSWORD@db:5432/app?query=SELECT * FROM f",
                           "index": "postgresql+psycopg://pallet:PASSWORD@db/pallet"}
    assert job.secret == "pallet-batch-digits-production-urls"
    assert job.cluster_env["PALLET_DB_URL"] == {"secretKeyRef": {"name": job.secret, "key": "db"}}
    assert "PALLET_DB_URL" not in job.env
    assert job.create_secret() == (
        "kubectl create secret generic pallet-batch-digits-production-urls "
        "--from-literal=input='postgresql://reader:PASSWORD@db:5432/app?query=SELECT * FROM f' "
        "--from-literal=db='postgresql+psycopg://pallet:PASSWORD@db/pallet'")
    files = schedule.files("digits@production", job, cron="0 2 * * *", key=["id"], batch_size=100, max_age="26h",
                           workdir=WORK, image="pallet-bundle:latest")
    for text in files.values():
        assert "r%40d" not in text and "idx-pw" not in text
    crontab = files["crontab.txt"]
    assert f". {job.env_file} && " in crontab and '--input "${PALLET_BATCH_INPUT}"' in crontab
    manifest = next(yaml.safe_load_all(files["cronjob.yaml"]))
    container = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][4:6] == ["--input", "$(PALLET_BATCH_INPUT)"]
    assert {"name": "PALLET_BATCH_INPUT",
            "valueFrom": {"secretKeyRef": {"name": job.secret, "key": "input"}}} in container["env"]


def test_the_image_layout_is_spelled_once():
    assert IMAGE_STORE == "/app/store"
    for template in (TEMPLATES / "Dockerfile", TEMPLATES / "kubernetes" / "deployment.yaml"):
        assert not re.search(r"/app\b", template.read_text()), f"{template} spells the image's folders itself"
    assert "PALLET_HOME=${store}" in (TEMPLATES / "Dockerfile").read_text()


def test_a_check_says_nothing_of_the_outputs_password(tmp_path):
    from pallet.batch.check import check, prometheus_text
    from pallet.batch.records import RunLog
    from pallet.store.database import make_engine

    output = "postgresql://batch:hunter2@db.example/preds?table=predictions"
    result = check(RunLog(make_engine(f"sqlite:///{tmp_path / 'runs.db'}")), output)
    assert not result.ok and result.problems == ["no batch run has written "
                                                 "postgresql://batch:***@db.example/preds?table=predictions"]
    assert "hunter2" not in str(result.to_dict()) and "hunter2" not in prometheus_text(result)
