"""Smoke tests: the examples and each benchmark suite (``python -m benchmarks``) run end to end on tiny
settings, and the package does not need what only they need."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys

import pytest

from benchmarks import convergence
from tests.launch import ROOT, horovodrun


def test_digits_example_runs_and_saves(tmp_path) -> None:
    output = horovodrun(ROOT / "examples/pytorch_digits.py", "gloo", "--epochs", "1", "--out", str(tmp_path),
                        "--logdir", str(tmp_path / "tb"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [run["compression"] for run in summary["runs"]] == ["none", "distq"]
    assert (tmp_path / "distq.pt").exists() and "saved:" in output
    check_telemetry(tmp_path / "tb")


def check_telemetry(logdir) -> None:
    """Rank 0 logged DistQ's step totals once per step of the DistQ run, and nothing for the dense run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    assert sorted(path.name for path in logdir.iterdir()) == ["distq"]
    events = EventAccumulator(str(logdir / "distq"), size_guidance={"scalars": 0, "tensors": 0})  # keep all
    events.Reload()
    tag = "distq/step/bytes_fraction"
    if tag in events.Tags()["scalars"]:  # torch's SummaryWriter
        logged = [(scalar.step, scalar.value) for scalar in events.Scalars(tag)]
    else:  # tf.summary writes tensors
        logged = [(event.step, float(make_ndarray(event.tensor_proto))) for event in events.Tensors(tag)]
    assert [step for step, _ in logged] == list(range(len(logged))) and len(logged) > 10, logged
    # The default warm-up sends 25% of each gradient as (index, value) pairs at first, then less.
    fractions = [value for _, value in logged]
    assert all(0 < value < 1 for value in fractions), logged
    assert sum(fractions[-5:]) < sum(fractions[:5]) / 2 and max(fractions[-5:]) < 0.25, logged


def test_tensorflow_digits_example_runs_and_saves(tmp_path) -> None:
    output = horovodrun(ROOT / "examples/tensorflow2_digits.py", "gloo", "--epochs", "1", "--out", str(tmp_path),
                        "--logdir", str(tmp_path / "tb"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [run["compression"] for run in summary["runs"]] == ["none", "distq"]
    # One trace (two on the first call, which creates variables), not one per step.
    assert all(run["traces"] <= 2 for run in summary["runs"]), summary
    assert (tmp_path / "distq.index").exists() and "saved:" in output
    check_telemetry(tmp_path / "tb")


def test_tensorflow_digits_example_fits_and_saves(tmp_path) -> None:
    output = horovodrun(ROOT / "examples/tensorflow2_digits.py", "gloo", "--fit", "--epochs", "2", "--out",
                        str(tmp_path), "--logdir", str(tmp_path / "tb"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [run["compression"] for run in summary["runs"]] == ["none", "distq"]
    dense, distq = summary["runs"]
    # 44 steps, all within the default warm-up (25% of each gradient decaying to 1% over 50 steps).
    assert distq["bytes_sent_per_step"] < dense["bytes_sent_per_step"] / 4 and distq["test_accuracy"] > 0.5, summary
    assert (tmp_path / "distq.index").exists() and (tmp_path / "distq-distq.pkl").exists()
    assert f"{tmp_path / 'distq-distq.pkl'}" in output
    check_telemetry(tmp_path / "tb")


def test_package_import_leaves_out_benchmark_dependencies() -> None:
    """matplotlib and scikit-learn serve benchmarks/ and examples/ only; the torch frontend needs no TensorFlow."""
    check = ("import sys, horovod_distq.torch; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'sklearn', 'tensorflow', 'keras'}))")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_torch_example_imports_no_tensorflow() -> None:
    """Importing the torch demo and parsing ``make demo``'s command line load no TensorFlow:
    ``torch.utils.tensorboard`` would (seconds and pages of start-up logs on every worker), so the
    example imports it only for ``--logdir``. The same process then imports it, to show that the
    check would see TensorFlow arrive: where it no longer comes, there is nothing to check."""
    check = (f"import sys; sys.path.insert(0, {str(ROOT / 'examples')!r}); import pytorch_digits; "
             "args = pytorch_digits.parse_arguments(['--compression', 'none', 'distq', '--out', 'runs/digits']); "
             "print(args.compression, args.out, args.logdir, 'tensorflow' in sys.modules); "
             "import torch.utils.tensorboard; print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    parsed, control = result.stdout.strip().splitlines()[-2:]
    if control != "True":
        pytest.skip("torch.utils.tensorboard no longer imports TensorFlow here")
    assert parsed == "['none', 'distq'] runs/digits None False", result.stdout


def documented_benchmark_commands() -> list[list[str]]:
    """The arguments of every ``python -m benchmarks`` command line in BENCHMARKS.md and the Makefile,
    continuation lines joined, comments and notes such as "(needs root)" dropped."""
    commands = []
    for name in ("BENCHMARKS.md", "Makefile"):
        text = (ROOT / name).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "-m benchmarks " in line:
                arguments = line.split("-m benchmarks ", 1)[1]
                commands.append(shlex.split(re.sub(r"\(.*?\)|#.*", "", arguments)))
    return commands


def test_documented_benchmark_commands_parse(capsys: pytest.CaptureFixture[str]) -> None:
    """Every suite's subcommand answers --help, every suite has a documented command line, and each
    documented one parses to its suite's own command (with only options that suite declares)."""
    from benchmarks.__main__ import SUITES, build_parser, suite_name

    names = [suite_name(suite) for suite in SUITES]
    for name in names:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([name, "--help"])
        assert exited.value.code == 0 and f"usage: python -m benchmarks {name}" in capsys.readouterr().out
    commands = documented_benchmark_commands()
    assert set(names) <= {word for command in commands for word in command}, commands
    for arguments in commands:
        try:
            args = build_parser().parse_args(arguments)
        except SystemExit:
            pytest.fail(f"python -m benchmarks {shlex.join(arguments)} no longer parses: {capsys.readouterr().err}")
        assert args.command.__module__ == f"benchmarks.{args.suite}", arguments


def bench(*args: str, out) -> None:
    command = [sys.executable, "-m", "benchmarks", "--out", str(out), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_kernels_suite(tmp_path) -> None:
    bench("kernels", "--sizes", "65536", "--ratios", "0.01", "--repetitions", "1", out=tmp_path)
    records = json.loads((tmp_path / "kernels.json").read_text())
    assert {"torch.topk", "distq normal", "distq auto (3 stages)"} <= {r["method"] for r in records}
    assert (tmp_path / "kernels.png").stat().st_size > 0


QUALITY_FIELDS = {"loop", "mode", "ratio", "family", "stages", "tensors", "median", "p5", "p95", "within_20pct",
                  "median_abs_error", "p95_abs_error"}


def test_quality_suite(tmp_path) -> None:
    """On the real gradients of two models (torch and Keras), the suite's JSON holds every row BENCHMARKS.md
    draws from, with sane figures, and shows what the suite claims on the tensors whose target is at
    least 100 entries: the default (auto, 3 stages) lands within +-20% of the target for nearly all
    tensors, single shot and with the closed loop; a normal fit misses it by far single shot, and
    the loop alone brings it within +-20%. A broken fit, selection or loop breaks one of these."""
    from horovod_distq import FAMILIES

    bench("quality", "--models", "digits_cnn", "keras_digits_cnn", "--steps", "60", out=tmp_path)
    summary = json.loads((tmp_path / "quality.json").read_text())
    assert list(summary) == ["all", "target>=100"]
    for rows in summary.values():
        for r in rows:
            assert set(r) == QUALITY_FIELDS, r
            figures = [r[key] for key in ("median", "p5", "p95", "median_abs_error", "p95_abs_error")]
            assert all(math.isfinite(x) for x in figures) and 0 <= r["p5"] <= r["median"] <= r["p95"], r
            assert 0 <= r["within_20pct"] <= 1 and r["tensors"] > 0, r
    columns = [(mode, ratio) for mode in ("raw", "accumulated") for ratio in (0.01, 0.001)]
    rows = {(r["loop"], r["mode"], r["ratio"], r["family"], r["stages"]): r for r in summary["all"]}
    assert set(rows) == {(loop, mode, ratio, family, stages) for loop in (False, True) for mode, ratio in columns
                         for family in FAMILIES for stages in (1, 2, 3)}
    large = {(r["loop"], r["mode"], r["ratio"], r["family"], r["stages"]): r for r in summary["target>=100"]}
    for mode, ratio in columns:
        for loop in (False, True):
            default = large[(loop, mode, ratio, "auto", 3)]
            assert abs(default["median"] - 1) <= 0.05 and default["within_20pct"] >= 0.9, default
        single, looped = large[(False, mode, ratio, "normal", 1)], large[(True, mode, ratio, "normal", 1)]
        assert not 1 / 1.5 <= single["median"] <= 1.5, single
        assert abs(looped["median"] - 1) <= 0.2, looped
    tables = (tmp_path / "quality.md").read_text()
    assert tables.count("### ") == 4 and all(f"| {family} | 3 |" in tables for family in FAMILIES)
    cells = [f"{r['within_20pct']:.0%} ({r['median_abs_error']:.3f} / {r['p95_abs_error']:.2f})"
             for r in (large[(True, mode, ratio, "auto", 3)] for mode, ratio in columns)]
    assert tables.rstrip().endswith("| auto | 3 | " + " | ".join(cells) + " |"), tables[-400:]
    assert (tmp_path / "quality.png").stat().st_size > 0


def test_e2e_suite_on_shaped_hosts(tmp_path) -> None:
    command = [sys.executable, "-m", "benchmarks", "--out", str(tmp_path), "e2e", "--hosts", "2", "--bandwidths",
               "1gbit", "--models", "digits_cnn", "--methods", "dense", "distq", "ddp-distq", "--steps", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode == 2 and "e2e:" in result.stderr:
        pytest.skip(result.stderr.strip())  # no root or no network namespaces here: the suite says so
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = json.loads((tmp_path / "e2e.json").read_text())
    assert [(r["hosts"], r["method"]) for r in records] == [(2, "dense"), (2, "distq"), (2, "ddp-distq")]
    dense, distq, _ = records
    assert distq["bytes_sent_last_step"] < dense["bytes_sent_last_step"] / 10
    # The kernel's count of what host1's NIC sent agrees: dense's ring allreduce sends about the
    # model's 4-byte gradients each step (2 hosts), distq far less.
    assert dense["link_bytes_per_step"] > 0.9 * dense["bytes_sent_last_step"], dense
    assert distq["link_bytes_per_step"] < dense["link_bytes_per_step"] / 5, records
    assert all(r["compute_ms_median"] > 0 for r in records)


def test_time_to_accuracy_suite_on_shaped_hosts(tmp_path) -> None:
    """Dense sets the target (its final validation loss); the other methods stop at the first
    evaluation that reaches it, or at --max-steps; seconds count the steps only."""
    command = [sys.executable, "-m", "benchmarks", "--out", str(tmp_path), "time_to_accuracy", "--hosts", "2",
               "--bandwidths", "1gbit", "--steps", "10", "--max-steps", "20", "--eval-every", "5",
               "--methods", "dense", "fp16", "distq"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode == 2 and "time_to_accuracy:" in result.stderr:
        pytest.skip(result.stderr.strip())  # no root or no network namespaces here: the suite says so
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert [(r["hosts"], r["bandwidth"], r["method"]) for r in records] == [
        (2, "1gbit", "dense"), (2, "1gbit", "fp16"), (2, "1gbit", "distq")]
    dense, fp16, distq = records
    target = dense["final_loss"]
    assert dense["steps"] == 10 and all(r["target_loss"] == target for r in records)
    assert dense["steps_to_target"] <= 10 and dense["curve"][-1]["loss"] == target
    for run in (fp16, distq):
        seconds = [p["seconds"] for p in run["curve"]]
        assert seconds[0] == 0 and seconds == sorted(seconds) and seconds[-1] > 0
        losses = [p["loss"] for p in run["curve"]]
        if run["steps_to_target"] is None:  # never reached: ran every step, every evaluation above
            assert run["steps"] == 20 and min(losses) > target, run["curve"]
        else:  # stopped at the first evaluation that reached it
            assert run["steps"] == run["steps_to_target"] and losses[-1] <= target < min(losses[:-1]), run["curve"]
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0


def test_convergence_suite(tmp_path) -> None:
    bench("convergence", "--models", "digits_cnn", "--ratios", "0.01", "0.1", "--steps", "31", "--warmup-steps", "5",
          "--methods", "dense", "distq", "distq-no-warmup", "distq-warmup", "distq-momentum", "powersgd-2",
          out=tmp_path)
    records = json.loads((tmp_path / "convergence.json").read_text())
    methods = ["distq", "distq-no-warmup", "distq-warmup", "distq-momentum"]
    assert [(r["ratio"], r["method"]) for r in records] == [
        (0.01, "dense"), *[(0.01, m) for m in methods], (0.01, "powersgd-2"),
        (0.1, "dense"), (0.1, "powersgd-2"), *[(0.1, m) for m in methods]]
    dense, distq, no_warmup, short_warmup, momentum, powersgd = records[:6]
    assert [p["step"] for p in dense["curve"]] == [0, 10, 20, 30, 31]
    assert dense["curve"][0]["loss"] == distq["curve"][0]["loss"]  # the same initial weights
    assert dense["bytes_per_step"] == dense["dense_bytes_per_step"]
    # The default warm-up (50 steps from 25%) lasts the whole run; 5 steps of it end early.
    assert no_warmup["bytes_per_step"] < dense["bytes_per_step"] / 20
    sent = [r["bytes_per_step"] for r in (no_warmup, short_warmup, distq)]
    assert sent == sorted(sent) and sent[-1] < dense["bytes_per_step"] / 2, sent
    assert momentum["bytes_per_step"] == pytest.approx(distq["bytes_per_step"], rel=0.2)  # with the same warm-up
    assert momentum["final_loss"] != distq["final_loss"]
    assert powersgd["bytes_per_step"] < dense["bytes_per_step"]
    assert (tmp_path / "convergence.png").stat().st_size > 0


def test_convergence_suite_over_seeds_and_optimizers(tmp_path) -> None:
    """Each seed is its own run (its own initial weights and batches); SGD's runs leave local Adam
    out, Adam's momentum correction; the table reports the seeds' mean and spread."""
    bench("convergence", "--models", "digits_cnn", "--ratios", "0.01", "--steps", "31", "--seeds", "0", "1",
          "--optimizers", "sgd", "adam", "--methods", "dense", "distq", "distq-momentum", "distq-adam", out=tmp_path)
    records = json.loads((tmp_path / "convergence.json").read_text())
    assert [(r["optimizer"], r["seed"], r["method"]) for r in records] == [
        ("sgd", 0, "dense"), ("sgd", 0, "distq"), ("sgd", 0, "distq-momentum"),
        ("sgd", 1, "dense"), ("sgd", 1, "distq"), ("sgd", 1, "distq-momentum"),
        ("adam", 0, "dense"), ("adam", 0, "distq"), ("adam", 0, "distq-adam"),
        ("adam", 1, "dense"), ("adam", 1, "distq"), ("adam", 1, "distq-adam")]
    by_run = {(r["optimizer"], r["seed"], r["method"]): r for r in records}
    assert by_run["sgd", 0, "dense"]["curve"][0] == by_run["adam", 0, "dense"]["curve"][0]  # the seed's weights
    assert by_run["sgd", 0, "dense"]["curve"][0] != by_run["sgd", 1, "dense"]["curve"][0]
    assert by_run["sgd", 0, "dense"]["final_loss"] != by_run["adam", 0, "dense"]["final_loss"]
    rows = {(row["optimizer"], row["method"]): row for row in convergence.summary(records)}
    dense = rows["sgd", "dense"]
    assert dense["seeds"] == [0, 1] and dense["final_x_dense"] == 1.0
    pair = [by_run["sgd", seed, "dense"]["final_loss"] for seed in (0, 1)]
    assert dense["final_loss"] == pytest.approx(sum(pair) / 2)
    assert dense["final_loss_std"] == pytest.approx(abs(pair[0] - pair[1]) / 2 ** 0.5)
    assert rows["adam", "distq"]["final_x_dense"] == pytest.approx(
        rows["adam", "distq"]["final_loss"] / rows["adam", "dense"]["final_loss"])
    assert ("adam", "distq-momentum") not in rows and ("sgd", "distq-adam") not in rows
    assert rows["adam", "distq-adam"]["final_loss"] != rows["adam", "distq"]["final_loss"]
    assert (tmp_path / "convergence.png").stat().st_size > 0


def test_tracing_suite(tmp_path) -> None:
    bench("tracing", "--methods", "fit-dense", "tape-distq", "--steps", "2", out=tmp_path)
    records = json.loads((tmp_path / "tracing.json").read_text())
    assert [r["method"] for r in records] == ["fit-dense", "tape-distq"]
    assert all(r["gradient_tensors"] == 158 and r["first_step_s"] > 0 for r in records), records
    assert (tmp_path / "tracing.png").stat().st_size > 0


def test_scaling_suite(tmp_path) -> None:
    bench("scaling", "--models", "digits_cnn", "--ranks", "2", "--ratios", "0.1", "--steps", "2", out=tmp_path)
    records = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["method"] for r in records["measured"]] == ["dense", "distq-sparse", "distq-auto", "distq-two_phase"]
    dense, sparse, auto, two_phase = records["measured"]
    assert sparse["link_bytes_per_step"] < dense["link_bytes_per_step"] / 3, records["measured"]
    assert auto["sparse_tensors"] == sparse["sparse_tensors"] == two_phase["sparse_tensors"] > 0  # at 2 ranks
    assert two_phase["link_bytes_per_step"] < dense["link_bytes_per_step"] / 3, records["measured"]
    assert max(r["auto"] / r["dense"] for r in records["model"]) <= 1.0
    # Modelled: the two-phase exchange's bytes do not grow with P (2k (P - 1) / P pairs per rank).
    at = {r["ranks"]: r for r in records["model"]}
    assert at[1024]["two_phase"] < 1.01 * at[8]["two_phase"] * (1023 / 1024) / (7 / 8)
    assert at[1024]["two_phase"] < at[1024]["sparse"] / 100
    assert (tmp_path / "scaling.png").stat().st_size > 0
