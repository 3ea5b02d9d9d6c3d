"""agm.training.sweep.run_sweep: resume from a runs JSONL, job order, errors naming the job, in-process = pool."""
from __future__ import annotations

import json
import operator

import pytest

from agm.training.sweep import SweepJobError, read_runs, run_sweep

# a picklable top-level worker (spawned processes import it): job -> job["value"]; a job without "value" fails
WORKER = operator.itemgetter("value")


def key(job: dict) -> str:
    return f"job{job['i']}"


def jobs(n: int) -> list[dict]:
    return [{"i": i, "value": {"i": i, "square": i * i}} for i in range(n)]


def test_resume_skips_recorded_keys_and_appends_new_ones(tmp_path):
    runs = tmp_path / "runs.jsonl"
    # job1 and job3 are done already (their recorded rows differ from what the worker would return: proof they are reused)
    runs.write_text("".join(json.dumps({"key": k, "row": {"old": k}}) + "\n" for k in ("job1", "job3")))
    ran = []

    def worker(job):  # in-process (workers=1): a closure is fine
        ran.append(job["i"])
        return job["value"]

    out = run_sweep(jobs(5), worker, key=key, workers=1, runs_jsonl=runs)
    assert ran == [0, 2, 4]
    assert out == [{"i": 0, "square": 0}, {"old": "job1"}, {"i": 2, "square": 4}, {"old": "job3"}, {"i": 4, "square": 16}]
    lines = [json.loads(line) for line in runs.read_text().splitlines()]
    assert [r["key"] for r in lines] == ["job1", "job3", "job0", "job2", "job4"]
    assert lines[2] == {"key": "job0", "row": {"i": 0, "square": 0}}
    # a second sweep runs nothing and returns the same records
    ran.clear()
    assert run_sweep(jobs(5), worker, key=key, workers=1, runs_jsonl=runs) == out and ran == []


def test_records_come_back_in_job_order_and_callback_sees_each_new_one(tmp_path):
    seen = []
    js = jobs(6)[::-1]
    out = run_sweep(js, WORKER, key=key, workers=2, runs_jsonl=tmp_path / "r.jsonl", on_record=lambda j, r: seen.append(j["i"]))
    assert out == [j["value"] for j in js]
    assert sorted(seen) == list(range(6))
    assert read_runs(tmp_path / "r.jsonl") == {key(j): j["value"] for j in js}


def test_workers_1_and_2_give_the_same_records_and_files(tmp_path):
    a = run_sweep(jobs(5), WORKER, key=key, workers=1, runs_jsonl=tmp_path / "a.jsonl")
    b = run_sweep(jobs(5), WORKER, key=key, workers=2, runs_jsonl=tmp_path / "b.jsonl")
    assert a == b == [j["value"] for j in jobs(5)]
    assert read_runs(tmp_path / "a.jsonl") == read_runs(tmp_path / "b.jsonl")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_names_its_key_and_finished_jobs_stay_recorded(tmp_path, workers):
    js = jobs(3)
    del js[1]["value"]
    runs = tmp_path / "runs.jsonl"
    with pytest.raises(SweepJobError, match=r"sweep job job1 failed: KeyError") as info:
        run_sweep(js, WORKER, key=key, workers=workers, runs_jsonl=runs)
    assert isinstance(info.value.__cause__, KeyError)
    assert "job0" in read_runs(runs)  # finished before the failure (in-process) or alongside it (pool): kept
    # fixed, the sweep resumes: only the jobs not recorded run
    js[1]["value"] = "fixed"
    assert run_sweep(js, WORKER, key=key, workers=workers, runs_jsonl=runs)[1] == "fixed"


def test_a_cut_off_last_line_is_dropped_and_the_next_record_starts_a_new_line(tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps({"key": "job0", "row": 0}) + "\n" + '{"key": "job1", "ro')  # killed mid-write
    with pytest.warns(RuntimeWarning, match="dropped 1 cut-off"):
        out = run_sweep(jobs(2), WORKER, key=key, runs_jsonl=runs)
    assert out == [0, {"i": 1, "square": 1}]
    with pytest.warns(RuntimeWarning, match="dropped 1 cut-off"):
        assert read_runs(runs) == {"job0": 0, "job1": {"i": 1, "square": 1}}
