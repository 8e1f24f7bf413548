"""The slurm/ templates and sweeps against a real local Slurm cluster.

The cluster (munge, MariaDB + slurmdbd, slurmctld, slurmd) is started by
``scripts/local_slurm.sh start`` (``.ci/run`` does it); without it these tests skip
with the reason. They run one after another on one xdist worker (group ``slurm``):
the node has two CPUs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_gen.generate import generate
from tests.conftest import ROOT, compose_cfg, tree_digest

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
GEN = [
    "samples_per_shard=12",
    "patch_size=24",
    "patches_per_source=6",
    "batch_size=6",
    "lens.size=7",
    "source.size=96",
    "source.supersample=2",
]
TRAIN = ["experiment=tiny", "val.panel_every=0"]


def sh(*cmd: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(c) for c in cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return r


def sacct(ids: list[str]) -> dict[str, dict]:
    """{JobID (array tasks as A_i): {state, exit, start, end}} of the jobs' final records."""
    r = sh("sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,Start,End")
    out = {}
    for line in r.stdout.splitlines():
        jid, state, code, start, end = line.split("|")
        out[jid] = {"state": state.split()[0], "exit": code, "start": start, "end": end}
    return out


def wait_jobs(ids: list[str], timeout: float = 300, records: int = 0) -> dict[str, dict]:
    """Poll until every job (and array task) of ``ids`` has ended and accounting holds at
    least ``records`` records (sacct lags slurmctld by a moment); fail on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        queued = sh("squeue", "-h", "-j", ",".join(ids)).stdout.strip()
        rec = sacct(ids)
        done = rec and all(v["state"] in TERMINAL for v in rec.values())
        if not queued and done and len(rec) >= max(records, len(ids)):
            return rec
        time.sleep(1)
    raise AssertionError(f"jobs {ids} still not finished after {timeout}s: {sacct(ids)}")


def wait_for(done, why, timeout: float = 600) -> None:
    """Poll ``done()`` until true; a liveness guard (a job that never gets there fails with
    ``why()``), not a speed check: the timeout only bounds a hang."""
    t0 = time.monotonic()
    while not done():
        assert time.monotonic() - t0 < timeout, why()
        time.sleep(0.5)


def sbatch(*args: str, env: dict | None = None) -> str:
    r = sh("sbatch", "--parsable", *args, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


def pipeline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Variables of a tiny slurm/pipeline.sh chain under ``tmp_path`` that waits for its end."""
    return {
        "DATA_DIR": str(tmp_path / "ds"),
        "SHARDS": "4",
        "RUN_DIR": str(tmp_path / "run"),
        "REGISTRY": str(tmp_path / "registry"),
        "CPUS_PER_TASK": "1",
        "DATA_OVERRIDES": " ".join(GEN),
        "TRAIN_OVERRIDES": " ".join(TRAIN),
        "WAIT": "1",
        "POLL": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slurm") / "ds"
    generate(compose_cfg(f"out_dir={d}", "shards=4", *GEN))
    return d


def test_datagen_array_then_manifest_and_a_resubmission_does_no_work(slurm_cluster, tmp_path):
    data = tmp_path / "ds"
    env = {"DATA_DIR": str(data), "SHARDS": "4"}

    def submit(logs: Path) -> tuple[str, str]:
        logs.mkdir()
        r = sh("slurm/submit_datagen.sh", f"--output={logs}/%x-%j.out", "--", *GEN, env=env)
        assert r.returncode == 0, r.stderr
        m = re.search(r"DATAGEN_JOB=(\d+) MANIFEST_JOB=(\d+)", r.stdout)
        assert m, r.stdout
        return m.group(1), m.group(2)

    array, manifest = submit(tmp_path / "logs1")
    rec = wait_jobs([array, manifest], records=5)
    tasks = {k: v for k, v in rec.items() if k.startswith(f"{array}_")}
    assert len(tasks) == 4 and all(v["state"] == "COMPLETED" for v in tasks.values()), rec
    assert rec[manifest]["state"] == "COMPLETED", rec
    # the manifest job started only after every array task had ended
    assert rec[manifest]["start"] >= max(v["end"] for v in tasks.values())
    man_log = (tmp_path / "logs1" / f"rt-manifest-{manifest}.out").read_text()
    assert re.search(r"^OK .*4 shards, 48 samples", man_log, re.M), man_log
    # the shards are the bytes a local run of the same config makes
    local = tmp_path / "local"
    generate(compose_cfg(f"out_dir={local}", "shards=4", *GEN))
    before = tree_digest(data)
    assert {k: v for k, v in before.items() if k.endswith(".h5")} == {
        k: v for k, v in tree_digest(local).items() if k.endswith(".h5")
    }
    assert json.loads((data / "manifest.json").read_text()) == json.loads(
        (local / "manifest.json").read_text()
    )
    # re-submitting the same array renders nothing and changes no byte
    array2, manifest2 = submit(tmp_path / "logs2")
    rec2 = wait_jobs([array2, manifest2], records=5)
    assert all(v["state"] == "COMPLETED" for v in rec2.values()), rec2
    task_logs = sorted((tmp_path / "logs2").glob("rt-datagen-*.out"))
    assert len(task_logs) == 4
    for out in task_logs:
        summary = json.loads(out.read_text().strip().splitlines()[-1])
        assert summary["shards_written"] == 0 and summary["shards_skipped"] == 1
    assert tree_digest(data) == before


def test_chain_datagen_ddp_two_ranks_export_publish(slurm_cluster, tmp_path):
    from residual_train.release.registry import Registry

    env = pipeline_env(
        tmp_path,
        NAME="dual",
        VERSION="v1",
        CPU_TASKS="2",
        TRAIN_OVERRIDES=" ".join([*TRAIN, "record_seen=true"]),
    )
    r = sh("slurm/pipeline.sh", env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in ("datagen", "manifest", "train", "export_publish"):
        assert re.search(rf"^{stage} job \d+: COMPLETED 0:0$", r.stdout, re.M), r.stdout
    run = tmp_path / "run"
    train_log = next((tmp_path / "run.slurm-logs").glob("train-*.out")).read_text()
    assert "1 node(s) x 2 task(s)" in train_log
    # both ranks trained, on disjoint samples, in every epoch
    for epoch in (0, 1):
        seen = [
            {
                tuple(s)
                for s in json.loads((run / "seen" / f"rank{k}-epoch{epoch}.json").read_text())
            }
            for k in (0, 1)
        ]
        assert seen[0] and seen[1] and not (seen[0] & seen[1])
    result = json.loads((run / "result.json").read_text())
    assert np.isfinite(result["value"]) and result["global_step"] > 0
    got = Registry(tmp_path / "registry").fetch("dual:v1")
    assert (got / "model.onnx").is_file()
    assert json.loads((got / "card.json").read_text())["metrics"]


def test_requeue_signal_checkpoints_requeues_and_resumes_in_the_same_run_dir(
    slurm_cluster, dataset, tmp_path
):
    run, steps = tmp_path / "run", 300
    log = tmp_path / "train.out"
    job = sbatch(
        "--cpus-per-task=1",
        f"--output={log}",
        "slurm/train.sbatch",
        f"data.dir={dataset}",
        *TRAIN,
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        "data.crop=24",
        "model.width=16",
        "logger=wandb",
        env={
            "RUN_DIR": str(run),
            "ACCELERATOR": "cpu",
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
        },
    )
    wait_for(  # training is under way
        lambda: (run / "checkpoints" / "last.ckpt").is_file(),
        lambda: log.read_text() if log.exists() else "no log",
    )
    # what Slurm sends --signal=USR1@margin before the time limit, sent now
    r = sh("scancel", "--signal=USR1", job)
    assert r.returncode == 0, r.stderr
    # the requeued job must start again before its end state means anything (while it is
    # being requeued, accounting briefly shows the first run's end)
    wait_for(
        lambda: "restart 1," in log.read_text(), lambda: (sacct([job]), log.read_text()[-3000:])
    )
    rec = wait_jobs([job], timeout=300)
    assert rec[job]["state"] == "COMPLETED", (rec, log.read_text()[-3000:])
    info = sh("scontrol", "show", "job", job).stdout
    assert "Restarts=1" in info, info
    text = log.read_text()  # --open-mode=append: both runs in one log
    assert "restart 0," in text and "restart 1," in text
    assert "Handling auto-requeue signal" in text
    hpc = run / "hpc_ckpt_1.ckpt"
    saved = torch.load(hpc, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < saved < steps  # checkpointed mid-run
    # ckpt_path=auto resumes from the newer of the requeue checkpoint and last.ckpt: the
    # first run keeps training until Slurm stops it, so a last.ckpt saved after the signal
    # is the newer state (and which one it is depends on timing)
    restored = re.findall(r"Restoring states from the checkpoint path at (\S+)", text)
    assert restored in ([str(hpc)], [str(run / "checkpoints" / "last.ckpt")]), (restored, text)
    result = json.loads((run / "result.json").read_text())
    assert result["global_step"] == steps and result["run_dir"] == str(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "train.out"]  # one run dir
    # the resumed job continued the same wandb run: one id, one offline record per start
    run_id = (run / "wandb_run_id").read_text().strip()
    assert sorted(p.name.rsplit("-", 1)[1] for p in (run / "wandb").glob("offline-run-*")) == [
        run_id,
        run_id,
    ]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == steps


def test_submitit_multirun_runs_two_slurm_jobs_and_returns_both_results(
    slurm_cluster, dataset, tmp_path
):
    from submitit.core.utils import pickle_load

    sweep = tmp_path / "sweep"
    r = sh(
        sys.executable, "-m", "residual_train", "-m", "hydra/launcher=slurm",
        "model.width=8,12", f"data.dir={dataset}", *TRAIN, f"hydra.sweep.dir={sweep}",
        env={"RT_CPUS_PER_TASK": "1"}, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    values = {}
    for k, width in ((0, 8), (1, 12)):
        res = json.loads((sweep / str(k) / "result.json").read_text())
        cfg = yaml.safe_load((sweep / str(k) / "config.yaml").read_text())
        assert cfg["model"]["width"] == width and np.isfinite(res["value"])
        values[res["run_dir"]] = res["value"]
    # the launcher got each job's return value back from Slurm (submitit result files)
    results = sorted((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2
    returned = sorted(pickle_load(p)[1].return_value for p in results)
    assert returned == sorted(values.values())
    ids = [p.parent.name for p in results]
    rec = wait_jobs(ids, timeout=60, records=2)  # accounting catches up a moment later
    assert all(v["state"] == "COMPLETED" for v in rec.values()) and len(rec) == 2


def test_optuna_sweep_of_three_trials_writes_its_best_parameters(slurm_cluster, dataset, tmp_path):
    sweep = tmp_path / "optuna"
    r = sh(
        sys.executable, "-m", "residual_train", "hparams_search=optuna", "hydra/launcher=slurm",
        "hydra.sweeper.n_trials=3", "model.width=choice(8,12)", "model.depth=choice(2,3)",
        f"data.dir={dataset}", *TRAIN, f"hydra.sweep.dir={sweep}",
        env={"RT_CPUS_PER_TASK": "1"}, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optim.lr", "model.width", "model.depth", "loss.type"}
    trials = [json.loads((sweep / str(k) / "result.json").read_text()) for k in range(3)]
    assert best["best_value"] == pytest.approx(max(t["value"] for t in trials))
    winner = max(range(3), key=lambda k: trials[k]["value"])
    cfg = yaml.safe_load((sweep / str(winner) / "config.yaml").read_text())
    assert cfg["model"]["width"] == best["best_params"]["model.width"]
    assert cfg["optim"]["lr"] == pytest.approx(best["best_params"]["optim.lr"])


@pytest.mark.parametrize(
    "failing,overrides,message",
    [
        ("train", {"TRAIN_OVERRIDES": "experiment=tiny loss.type=bogus"}, "loss.type = 'bogus'"),
        ("datagen", {"DATA_OVERRIDES": "sensor.k1=-1"}, "sensor.k1 = -1"),
    ],
)
def test_a_failing_stage_stops_the_chain_with_a_clear_message(
    slurm_cluster, tmp_path, failing, overrides, message
):
    env = pipeline_env(tmp_path, SHARDS="2", **overrides)
    r = sh("slurm/pipeline.sh", env=env, timeout=300)  # ended: did not hang on a dependency
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(rf"^error: stage {failing} \(job \d+\) failed: FAILED", r.stderr, re.M), (
        r.stderr
    )
    assert message in r.stderr
    stages = ["datagen", "manifest", "train", "export_publish"]
    for later in stages[stages.index(failing) + 1 :]:
        assert re.search(rf"^{later} job \d+: CANCELLED", r.stdout, re.M), r.stdout
    assert not (tmp_path / "registry").exists()
