"""CPU threads (advgrad/execution/threads.py): what ``--threads auto`` may use and what it picks."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import assert_bad_input, invoke

from advgrad.core.errors import UsageError
from advgrad.execution import threads as t
from advgrad.io.model.load_model import load_default_model


@pytest.fixture
def no_limits(monkeypatch, tmp_path):
    """Four CPUs, no cgroup files, no OMP_NUM_THREADS, no torchrun."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(t, "CGROUP_ROOT", tmp_path)
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_affinity_of_one_cpu_gives_one_thread(no_limits, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert t.available_cpus(no_limits) == 1
    assert t.choose_threads(None, cpus=t.available_cpus(no_limits), batch_flops=1e15).threads == 1


def test_no_limits_gives_every_cpu(no_limits):
    assert t.available_cpus(no_limits) == 4


def test_cgroup_v2_quota_of_one_and_a_half_cpus_gives_one(no_limits):
    (no_limits / "cpu.max").write_text("150000 100000\n")
    assert t.cgroup_cpu_quota(no_limits) == pytest.approx(1.5)
    assert t.available_cpus(no_limits) == 1


def test_cgroup_v2_without_quota_is_no_limit(no_limits):
    (no_limits / "cpu.max").write_text("max 100000\n")
    assert t.cgroup_cpu_quota(no_limits) is None
    assert t.available_cpus(no_limits) == 4


def test_cgroup_v1_quota(no_limits):
    (no_limits / "cpu").mkdir()
    (no_limits / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    (no_limits / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert t.available_cpus(no_limits) == 2
    (no_limits / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert t.available_cpus(no_limits) == 4


def test_unreadable_cgroup_files_are_no_limit(no_limits):
    (no_limits / "cpu.max").write_text("garbage")
    (no_limits / "cpu.cfs_quota_us").mkdir()  # a folder where a file should be: unreadable
    assert t.available_cpus(no_limits) == 4


def test_torchrun_splits_the_cpus_among_local_ranks(no_limits, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert t.available_cpus(no_limits) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # more ranks than CPUs: still one each
    assert t.available_cpus(no_limits) == 1


def test_omp_num_threads_caps_auto(no_limits, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert t.available_cpus(no_limits) == 3


def test_small_work_gets_one_thread_large_work_every_cpu():
    digits = load_default_model(torch.device("cpu"))
    flops = t.forward_flops(digits, torch.rand(1, 1, 8, 8))
    assert flops is not None and 1e5 < flops < 1e7  # two small convolutions and two linear layers
    assert t.choose_threads(None, cpus=4, batch_flops=flops * 256).threads == 1
    assert t.choose_threads(None, cpus=4, batch_flops=2 * t.FLOPS_PER_THREAD).threads == 2
    assert t.choose_threads(None, cpus=4, batch_flops=1e15).threads == 4
    assert t.choose_threads(None, cpus=4, batch_flops=None).threads == 4
    assert t.choose_threads(None, cpus=16, batch_flops=1e15, device_type="cuda").threads == t.CUDA_THREADS


def test_explicit_count_is_used_and_warned_about_when_too_many():
    assert t.choose_threads(2, cpus=4) == t.ThreadChoice(2, "as given", None)
    choice = t.choose_threads(8, cpus=2, batch_flops=1.0)
    assert choice.threads == 8 and "more than the 2 CPU" in choice.warning


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_bad_values_are_usage_errors(value):
    with pytest.raises(UsageError, match="`threads`"):
        t.parse_threads(value)


def test_parse_threads():
    assert t.parse_threads("auto") is None and t.parse_threads(" AUTO ") is None
    assert t.parse_threads("3") == 3 and t.parse_threads(2) == 2


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_cli_bad_threads_exit_2(value):
    assert_bad_input(invoke(["info", "--threads", value]), "--threads")


def test_cli_reports_the_chosen_threads(keep_torch_threads):
    result = invoke(["info", "--threads", "1", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 1
    assert torch.get_num_threads() == 1
    assert result.stderr.splitlines()[0].endswith("device: cpu, 1 thread")


def test_eval_report_carries_threads_and_config_key(tmp_path, keep_torch_threads):
    config = tmp_path / "run.toml"
    config.write_text('threads = 1\nattack = "fgsm"\neps = ["0", "0.1"]\nlimit = 20\n')
    result = invoke(["eval", "--config", config, "--json", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["threads"] == 1
    assert report["config"]["inputs"]["threads"] == "1"


def test_cpus_other_processes_keep_busy_are_not_used():
    # big work on 2 CPUs: both when idle, one when a neighbour spins on the other
    assert t.choose_threads(None, cpus=2, batch_flops=1e15, idle=1.9).threads == 2
    assert t.choose_threads(None, cpus=2, batch_flops=1e15, idle=1.0).threads == 1
    assert t.choose_threads(None, cpus=8, batch_flops=1e15, idle=0.0).threads == 1  # never below one
    assert t.choose_threads(3, cpus=8, batch_flops=1e15, idle=0.0).threads == 3  # an explicit count stands


def test_idle_cpus_from_proc_stat(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    samples = iter(
        [
            "cpu  1 2 3 4\ncpu0 100 0 0 100 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n",
            # cpu0 busy all 10 ticks, cpu1 idle 8 of 10; cpu2 is not in the affinity mask
            "cpu  1 2 3 4\ncpu0 110 0 0 100 0 0 0 0\ncpu1 102 0 0 108 0 0 0 0\ncpu2 0 0 0 50 0 0 0 0\n",
        ]
    )
    monkeypatch.setattr(t, "_read", lambda path: next(samples) if str(path) == "/proc/stat" else None)
    monkeypatch.setattr(t.time, "sleep", lambda s: None)
    assert t.idle_cpus() == pytest.approx(0.8)


def test_idle_cpus_unreadable_is_unknown(monkeypatch):
    monkeypatch.setattr(t, "_read", lambda path: None)
    assert t.idle_cpus(0) is None


def test_cli_warns_when_the_count_exceeds_the_cpus(keep_torch_threads, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    result = invoke(["info", "--threads", "3", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 3
    assert "warning: --threads 3 is more than the 1 CPU(s) this process may use" in result.stderr


def test_forward_flops_counts_convolutions_and_linear_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10))
    # conv: 2 · (8·4·4 outputs) · 3 channels · 9 taps; linear: 2 · 10 outputs · 128 inputs, per sample
    assert t.forward_flops(net, torch.rand(2, 3, 4, 4)) == 2 * 128 * 27 + 2 * 10 * 128


def test_forward_flops_without_known_layers_uses_the_parameter_count():
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(10, 16))

        def forward(self, x):
            return torch.nn.functional.linear(x.flatten(1), self.weight)

    assert t.forward_flops(Bare(), torch.rand(1, 1, 4, 4)) == 2 * 160 * 16

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("no")

    assert t.forward_flops(Broken(), torch.rand(1, 1, 4, 4)) is None
