"""Distributed evaluation (advgrad/execution/distributed.py, advgrad/cli/torchrun.py): several CPU
processes under gloo give the report one process gives, and only rank 0 speaks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed_worker as worker
import pytest
import torch
import torch.multiprocessing as mp
from helpers import assert_bad_input, invoke
from report_helpers import comparable, stop_after

import advgrad.cli.console as console
import advgrad.evaluation.sweep as sweep_module
from advgrad.core.errors import InternalError, UsageError
from advgrad.evaluation.evidence import Evidence
from advgrad.evaluation.resume import RunState
from advgrad.evaluation.sweep import evaluate
from advgrad.evaluation.tally import BatchTally
from advgrad.execution.distributed import Launch, LocalExchange, Shard, launch_from_env, process_device, process_group

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # seconds; a hung collective fails the test instead of the suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_examples(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert [e[:4] for e in a[name]] == [e[:4] for e in b[name]]
        for ea, eb in zip(a[name], b[name], strict=True):
            assert torch.equal(ea[4], eb[4]) and torch.equal(ea[5], eb[5])


# ------------------------------------------------------------------------ two gloo processes


@pytest.mark.slow
def test_two_processes_give_the_single_process_report_and_resume_a_state(tmp_path, monkeypatch):
    # 45 samples in batches of 10: five batches, the last one short, so rank 0 runs three and rank 1
    # two (then waits); the 15 examples kept per attack come from batches 0 (rank 0) and 1 (rank 1,
    # which keeps more than the report takes); the checks' gradient
    # pass covers the first 25 samples only (three batches, on both ranks).
    limit, batch, examples = 45, 10, 15
    torch.set_num_threads(1)
    monkeypatch.setattr(sweep_module, "GRADIENT_SAMPLES", worker.GRADIENT_SAMPLES)
    inputs, attacks, config = worker.setup(limit, batch, examples)
    rows = worker.Rows(attacks, config)
    single = worker.saved(evaluate(inputs.model.module, inputs.batches(), attacks, config, records=rows), rows)
    assert [r["index"] for r in rows] == list(range(limit))
    assert 0 < len(single["examples"]["pgd"]) <= examples
    assert single["report"]["diagnostics"]["gradient_samples"] < single["report"]["clean_correct"]

    state = tmp_path / "state"  # a single-process run interrupted after two batches
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            inputs.model.module,
            inputs.batches(),
            attacks,
            config,
            state=RunState.open(state, "key"),
            progress=stop_after(2),
        )
    assert RunState.open(state, "key").finished == 2

    context = mp.start_processes(
        worker.run,
        args=(2, free_port(), str(tmp_path), limit, batch, examples, str(state)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    for process in context.processes:
        process.join(TIMEOUT)
    alive = [p for p in context.processes if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung"
    assert all(p.exitcode == 0 for p in context.processes), [p.exitcode for p in context.processes]

    for name in ("fresh", "resumed"):
        run = torch.load(tmp_path / f"{name}.pt", weights_only=False)
        assert comparable(run["report"]) == comparable(single["report"]), name
        assert run["records"] == single["records"], name  # per-sample records too, in the same order
        assert_same_examples(run["examples"], single["examples"])
        assert run["report"]["timing"]["world_size"] == 2
    assert torch.load(tmp_path / "resumed.pt", weights_only=False)["report"]["timing"]["resumed_batches"] == 2


@pytest.mark.slow
def test_torchrun_eval_equals_the_single_process_eval_and_only_rank_0_speaks(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "ADVGRAD_STATE_DIR": str(tmp_path / "states")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    args = [
        "eval",
        "--limit",
        "45",
        "--batch-size",
        "10",
        "--eps",
        "0,0.1,0.3",
        "--steps",
        "5",
        "--fail-under",
        "pgd@0.1=0.9",
        "--device",
        "cpu",
    ]
    single = subprocess.run(
        [sys.executable, "-m", "advgrad", *args, "--json", str(tmp_path / "single.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "advgrad",
            *args,
            "--json",
            str(tmp_path / "dist.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert single.returncode == 1, single.stderr  # the gate fails in both
    assert launched.returncode != 0, launched.stderr
    a = json.loads((tmp_path / "single.json").read_text())
    b = json.loads((tmp_path / "dist.json").read_text())
    assert comparable(a) == comparable(b)
    assert (a["timing"]["world_size"], b["timing"]["world_size"]) == (1, 2)
    # one report on stdout, each message once, nothing from rank 1
    assert launched.stdout.count("sanity checks:") == 1
    for line in ("wrote ", "gate FAILED: pgd", "model: embedded DigitsCNN"):
        assert launched.stderr.count(line) == 1, (line, launched.stderr)
    assert "[rank 1]" not in launched.stderr
    assert not list((tmp_path / "states").glob("*/batch-*.pt"))  # the finished run removed its state


@pytest.mark.slow
@pytest.mark.parametrize("method", ["smoothing", "bab"])
def test_torchrun_certify_equals_the_single_process_certify(tmp_path, method):
    # randomized smoothing seeds its noise per batch, branch and bound its attacks per batch and ε
    # (and has no time limit here), so two processes certify exactly what one does
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "ADVGRAD_STATE_DIR": str(tmp_path / "states")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    if method == "smoothing":
        args = ["certify", "--method", "smoothing", "--samples", "100", "--limit", "40", "--batch-size", "10"]
        args += ["--eps", "0,0.25,0.5", "--device", "cpu"]
    else:
        args = ["certify", "--method", "bab", "--limit", "24", "--batch-size", "6", "--eps", "0,0.03"]
        args += ["--device", "cpu", "--counterexamples", str(tmp_path / "found.pt")]
    runs = {}
    for name, launcher in (
        ("single", []),
        ("dist", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]),
    ):
        done = subprocess.run(
            [sys.executable, *launcher, "-m", "advgrad", *args, "--json", str(tmp_path / f"{name}.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    a, b = runs["single"], runs["dist"]
    assert comparable(a) == comparable(b)
    assert a["attacks"][method]["abstained"] == b["attacks"][method]["abstained"]
    assert (a["timing"]["world_size"], b["timing"]["world_size"]) == (1, 2)
    if method == "bab":  # the verdicts are the same numbers; rank 0 saved every process's counterexamples
        assert [p["falsified"] for p in a["attacks"]["bab"]["points"]] == [
            p["falsified"] for p in b["attacks"]["bab"]["points"]
        ]
        found = torch.load(tmp_path / "found.pt")
        assert len(found["index"]) == b["attacks"]["bab"]["points"][-1]["falsified"] > 0


@pytest.fixture
def launched(monkeypatch):
    """This process as one rank of a launch of two (set ``RANK``/``LOCAL_RANK`` in the test); the
    consoles a non-zero rank silences are given their voice back afterwards."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    yield monkeypatch
    console._state["rank"] = 0
    console.out.quiet = console.err.quiet = False


def test_other_commands_refuse_to_run_under_a_launch_of_several_processes(launched):
    launched.setenv("RANK", "0")
    launched.setenv("LOCAL_RANK", "0")
    assert_bad_input(invoke(["grad", "--limit", "2"]), "only `advgrad eval`")
    launched.setenv("RANK", "1")
    launched.setenv("LOCAL_RANK", "1")
    quiet = invoke(["attack", "--limit", "2"])
    assert quiet.exit_code == 2 and quiet.stdout == "" and quiet.stderr == ""  # rank 1 stays silent


def test_a_non_zero_rank_prints_only_its_errors_with_its_rank(launched):
    launched.setenv("RANK", "1")
    launched.setenv("LOCAL_RANK", "1")
    result = invoke(["eval", "--limit", "4", "--eps", "-1"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["[rank 1] error: bad ε '-1': it must be ≥ 0"]


# ------------------------------------------------------------------------ a launch that cannot join (issue 21, item 8)


def bare_env(**launch: str) -> dict:
    """This environment without torchrun's variables, plus ``launch``'s."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **launch}


@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_that_cannot_join_stops_within_dist_timeout(monkeypatch, capfd, rank):
    """Rank 1 finds no store at a closed port; rank 0 opens it and no rank 1 comes. Before, each
    waited torch's half hour; torch's C++ log lines (with stack traces) stay off stderr."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    notices: list[str] = []
    with pytest.raises(
        UsageError, match=r"could not join the torchrun process group \(gloo\).*`dist_timeout` \(0.5 s\)"
    ):
        with process_group(Launch(rank, 2, rank), torch.device("cpu"), 0.5, waiting=notices.append):
            pass  # pragma: no cover - never joined
    assert not torch.distributed.is_initialized()
    assert capfd.readouterr().err == ""


def test_dist_timeout_is_a_positive_number_of_seconds():
    for value in ("0", "-1", "inf", "nan"):
        assert_bad_input(invoke(["eval", "--limit", "2", "--dist-timeout", value]), "--dist-timeout must be")


@pytest.mark.slow
def test_an_unreachable_store_is_one_line_and_exit_2():
    env = bare_env(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "advgrad", "eval", "--limit", "4", "--device", "cpu", "--dist-timeout", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stdout == "", done.stderr
    assert done.stderr.startswith("[rank 1] error: could not join the torchrun process group (gloo): ")
    assert "within --dist-timeout (1 s): check MASTER_ADDR and MASTER_PORT" in done.stderr


@pytest.mark.slow
def test_ctrl_c_while_waiting_for_the_other_ranks_stops_at_once():
    """Rank 0 waits for a rank 1 that never comes; SIGINT used to be ignored until torch gave up."""
    env = bare_env(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    process = subprocess.Popen(
        [sys.executable, "-m", "advgrad", "eval", "--limit", "4", "--device", "cpu", "--dist-timeout", "600"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(TIMEOUT, process.kill)  # a process that never says it waits fails the test
    guard.start()
    try:
        waiting = process.stderr.readline()  # said once the wait lasts: it is waiting now
        time.sleep(1)  # the notice is printed by rich, whose print an interrupt must not cut (it would print twice)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        guard.cancel()
        process.kill()
    assert waiting.startswith("distributed: waiting for the 2 processes of the launch to join"), waiting
    assert "(at most 600 s: --dist-timeout)" in waiting
    assert process.returncode == 130 and err.strip() == "interrupted" and out == "", (process.returncode, err)


# ------------------------------------------------------------------------ pieces, in one process


def test_launch_is_read_from_torchrun_environment():
    assert launch_from_env({}) is None
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None  # one process: no launch
    assert launch_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(3, 4, 1)
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "0", "WORLD_SIZE": "0"}):
        with pytest.raises(UsageError):
            launch_from_env(bad)


def test_process_device_refuses_one_named_gpu_and_keeps_the_cpu():
    launch = Launch(1, 2, 1)
    assert process_device("cpu", launch) == torch.device("cpu")
    with pytest.raises(UsageError, match="LOCAL_RANK"):
        process_device("cuda:0", launch)
    if not torch.cuda.is_available():
        assert process_device("auto", launch) == torch.device("cpu")


def tally(n: int) -> BatchTally:
    return BatchTally(n, 0, [0, 0], [0, 0], [], Evidence())


def test_a_process_alone_exchanges_with_itself():
    local = LocalExchange()
    assert local.world_size == 1 and [b for b, _ in local.number("abc")] == [0, 1, 2]
    assert local.samples_before(0) == 0
    assert local.exchange(0, first := tally(10)) == [first]
    assert local.exchange(1, second := tally(7)) == [second]
    assert local.samples_before(2) == 17 and list(local.drain()) == [] and local.total(5) == 5
    with local.main_first():  # nobody to wait for
        ran = True
    assert ran


def test_the_sweep_alone_and_with_a_local_exchange_give_the_same_report():
    inputs, attacks, config = worker.setup(25, 10, 4)
    alone = evaluate(inputs.model.module, inputs.batches(), attacks, config)
    local = evaluate(inputs.model.module, inputs.batches(), attacks, config, shard=LocalExchange())
    assert comparable(alone.to_dict()) == comparable(local.to_dict())
    assert alone.timing["world_size"] == local.timing["world_size"] == 1


def test_shard_numbers_its_batches_and_checks_their_order():
    shard = Shard(Launch(1, 3, 1), batch_size=10)
    assert [b for b, _ in shard.number("abc")] == [1, 4, 7]
    assert shard.samples_before(4) == 40
    shard._check(0, tally(10))
    with pytest.raises(InternalError):  # batch 2 arrives when batch 1 is due
        shard._check(2, tally(10))
    shard = Shard(Launch(0, 2, 0), batch_size=10)
    shard._check(0, tally(7))
    with pytest.raises(InternalError):  # only the last batch may be short
        shard._check(1, tally(10))


def test_each_rank_reads_its_own_batches_of_the_run():
    from advgrad.io.inputs import InputOptions, open_inputs

    inputs = open_inputs(InputOptions(limit=45, batch_size=10, shuffle=True, seed=2, device="cpu"))
    whole = list(inputs.batches())
    shares = {rank: list(inputs.batches(rank, 3)) for rank in range(3)}
    assert [len(shares[r]) for r in range(3)] == [2, 2, 1]
    for rank, batches in shares.items():
        for i, (x, y) in enumerate(batches):
            wx, wy = whole[rank + 3 * i]  # batch k of the run goes to rank k mod 3
            assert torch.equal(x, wx) and torch.equal(y, wy)
    assert list(inputs.batches(5, 6)) == []  # more ranks than batches: the last ones get none
