"""Every shipped model and overlay fitted on ml-latest-small's composed data section, and the multi-seed runner."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from negseq.errors import run_cli
from negseq.fit import main as fit_main
from negseq.studies.compare import main as compare_main
from negseq.studies.runner import collect, collect_selections, results_table
from negseq.studies.runner import main as run_experiments

ROOT = Path(__file__).parents[1]
DATA = ROOT / "experiments" / "data" / "ml-latest-small.yaml"
PNFREC = ROOT / "experiments" / "models" / "pnfrec.yaml"
# each model alone, each beyond-the-paper overlay over PNFRec
COMPOSITIONS = [[p] for p in sorted((ROOT / "experiments" / "models").glob("*.yaml"))] + [[PNFREC, p] for p in sorted((ROOT / "experiments" / "beyond").glob("*.yaml"))]
TINY = ["--model.dim", "16", "--data.max_len", "10", "--trainer.max_epochs", "1", "--trainer.enable_model_summary", "false"]


@pytest.mark.slow
@pytest.mark.parametrize("configs", COMPOSITIONS, ids=lambda configs: configs[-1].stem)
def test_each_config_fits_and_tests(configs, tmp_path, tiny_log):
    args = [arg for config in [DATA, *configs] for arg in ("--config", str(config))]
    metrics = fit_main([*args, "--data.path", tiny_log, "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false", *TINY])
    assert metrics["test/n_users_pos"] + metrics["test/n_users_neg"] > 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith(configs[-1].stem)  # a run is named after its last config
    history = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    # the loss terms each model logs show which parts of the composite loss are on
    model = {key: value for config in configs for key, value in yaml.safe_load(config.read_text()).get("model", {}).items()}
    expected = {"train/loss_next"} if model["family"] in ("whole_history", "signed") else {"train/loss_pos"}
    if model.get("sign_weight"):
        expected.add("train/loss_sign")
    if model["beta"]:
        expected.add("train/loss_contrast")
    if model["alpha"]:
        expected.add("train/loss_neg")
    if model["family"] == "positives_unlikelihood":
        expected.add("train/loss_unlikely")
    assert {k for k in history if k.startswith("train/loss_")} == expected


def test_results_table_means_sds_and_bold_best():
    runs = pl.DataFrame(
        {
            "config": ["a", "a", "b", "b"],
            "seed": [1, 2, 1, 2],
            "test/hr_p@10": [0.1, 0.3, 0.2, 0.2],
            "test/ndcg_p@10": [0.05, 0.05, 0.01, 0.03],
            "test/delta_hr@10": [0.0, 0.1, 0.2, 0.2],
            "test/delta_ndcg@10": [0.0, 0.0, 0.1, 0.1],
            "test/hr_n@10": [0.1, 0.2, 0.3, 0.3],
            "test/coverage@10": [0.5, 0.5, 0.4, 0.4],
            "fit_seconds": [10.0, 20.0, 30.0, 30.0],
            "best_epoch": [3, 5, 4, 4],
        }
    )
    lines = results_table(runs, order=["b", "a"]).splitlines()
    assert lines[0] == "| | b (n=2) | a (n=2) |"
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["HR_p@10"][0] == "**0.2000 ± 0.0000**" and rows["HR_p@10"][1].startswith("**0.2000 ± 0.1414**")
    assert rows["Delta_HR@10"][0] == "**0.2000 ± 0.0000**"
    assert rows["HR_n@10"][1].startswith("**0.1500 ± 0.0707**")  # lower is better for HR_n
    assert rows["NDCG_p@10"][1].startswith("**0.0500 ± 0.0000**")
    assert rows["training time, s"][1].startswith("15.0 ± 7.1") and "**" not in "".join(rows["training time, s"])
    assert not any(label.startswith("val ") for label in rows)  # these runs recorded no validation metrics


def test_results_table_validation_rows_when_recorded():
    runs = pl.DataFrame(
        {
            "config": ["a", "a", "b"],
            "seed": [1, 2, 1],
            **{key: [0.1, 0.2, 0.3] for key in ("test/hr_p@10", "test/ndcg_p@10", "test/delta_hr@10", "test/delta_ndcg@10", "test/hr_n@10", "test/coverage@10")},
            "val/ndcg_p@10": [0.04, 0.06, 0.03],
            "val/delta_ndcg@10": [0.02, 0.02, 0.01],
            "val/hr_n@10": [None, None, 0.2],  # config a: no negative-target validation users recorded
            "negative_scoring": [0.5, 0.25, 0.0],
            "fit_seconds": [1.0, 1.0, 1.0],
            "best_epoch": [1, 1, 1],
        }
    )
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in results_table(runs).splitlines()[2:]}
    assert rows["val NDCG_p@10"][0] == "**0.0500 ± 0.0141**"
    assert rows["val HR_n@10"][0].strip(" |") == "" and rows["val HR_n@10"][1].startswith("**0.2000")
    assert rows["negative_scoring (lambda)"][0] == "0.3750 ± 0.1768"


def test_results_table_leaves_out_validation_rows_that_are_0_in_every_run():
    runs = pl.DataFrame(
        {
            "config": ["a", "b"],
            "seed": [1, 1],
            **{key: [0.1, 0.2] for key in ("test/hr_p@10", "test/ndcg_p@10", "test/delta_hr@10", "test/delta_ndcg@10", "test/coverage@10")},
            "test/hr_n@10": [0.0, 0.0],  # a test metric of 0 is a result: kept
            "val/ndcg_p@10": [0.04, 0.06],
            "val/hr_n@10": [0.0, 0.0],  # validation without disliked targets
            "negative_scoring": [0.0, 0.0],  # no lambda selected
            "fit_seconds": [1.0, 1.0],
            "best_epoch": [1, 1],
        }
    )
    labels = [line.split(" | ")[0].strip("| ") for line in results_table(runs).splitlines()[2:]]
    assert "HR_n@10" in labels and "val NDCG_p@10" in labels
    assert "val HR_n@10" not in labels and "negative_scoring (lambda)" not in labels


def test_results_table_has_no_number_for_a_group_without_users():
    """Runs whose validation had no disliked target: no HR_n and no Delta there (null now, 0 and Delta = positive before)."""
    base = {"config": ["a", "a", "b"], "seed": [1, 2, 1], "test/hr_p@10": [0.1, 0.3, 0.2], "test/n_users_neg": [3, 3, 3]}
    old = pl.DataFrame({**base, "val/ndcg_p@10": [0.04, 0.06, 0.05], "val/delta_ndcg@10": [0.04, 0.06, 0.05],
                        "val/hr_n@10": [0.0, 0.0, 0.0], "val/n_users_neg": [0, 0, 0]})
    new = old.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in ("val/delta_ndcg@10", "val/hr_n@10"))
    for runs in (old, new):
        lines = results_table(runs).splitlines()
        labels = [line.split(" | ")[0].strip("| ") for line in lines[2:]]
        assert labels == ["HR_p@10", "val NDCG_p@10"], labels
        assert "0.2000 ± 0.1414" in lines[2]  # config a: mean and sd of 0.1 and 0.3
    one_empty = old.with_columns(pl.Series("val/n_users_neg", [0, 4, 4]), pl.Series("val/hr_n@10", [0.0, 0.5, 0.25]))
    (row,) = [line for line in results_table(one_empty).splitlines() if line.startswith("| val HR_n@10")]
    assert row.split(" | ")[1:] == ["0.5000 ± 0.0000", "**0.2500 ± 0.0000** |"]  # seed 1 of a has no user there: not a 0 in the mean; lower is better



@pytest.mark.slow
def test_runner_runs_every_pair_once_and_resumes(tmp_path, tiny_log, fits_in_process):
    configs = [str(ROOT / "experiments/models/sasrec_p.yaml"), str(ROOT / "experiments/models/pnfrec.yaml"), "--data", str(DATA)]
    out = tmp_path / "out"
    # an interrupted earlier run: partial files and no metrics.json, which must not survive
    stale = out / "runs" / "sasrec_p" / "seed43"
    stale.mkdir(parents=True)
    (stale / "history.jsonl").write_text('{"epoch": 1}\n' * 7)
    run_experiments([*configs, "--seeds", "2", "--out", str(out), "--", "--data.path", tiny_log, *TINY])
    runs = pl.read_csv(out / "runs.csv")
    assert sorted(zip(runs["config"], runs["seed"])) == [("pnfrec", 42), ("pnfrec", 43), ("sasrec_p", 42), ("sasrec_p", 43)]
    assert len((stale / "history.jsonl").read_text().splitlines()) == 1
    table = (out / "RESULTS.md").read_text()
    assert "| | sasrec_p (n=2) | pnfrec (n=2) |" in table and "python -m negseq.experiments" in table

    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")}
    run_experiments([*configs, "--seeds", "2", "--out", str(out), "--", "--data.path", tiny_log, *TINY])
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")} == finished
    assert collect(out / "runs").height == 4


def test_collect_selections_one_row_per_candidate(tmp_path):
    for seed, chosen in ((1, 0.5), (2, 0.0)):
        run = tmp_path / "runs" / "negative_scoring" / f"seed{seed}"
        run.mkdir(parents=True)
        candidates = [{"negative_scoring": w, "val/delta_ndcg@10": 0.1 * (w == chosen)} for w in (0.0, 0.5)]
        (run / "selection.json").write_text(json.dumps({"monitor": "val/delta_ndcg@10", "chosen": chosen, "candidates": candidates}))
    (tmp_path / "runs" / "pnfrec" / "seed1").mkdir(parents=True)  # a run without a selection adds no row
    frame = collect_selections(tmp_path / "runs")
    assert frame.select("seed", "negative_scoring", "chosen").rows() == [(1, 0.0, False), (1, 0.5, True), (2, 0.0, True), (2, 0.5, False)]
    assert frame.filter("chosen")["val/delta_ndcg@10"].to_list() == [0.1, 0.1]


@pytest.mark.slow
def test_runner_composes_data_base_and_overlay_and_takes_complete_configs(tmp_path, tiny_log, fits_in_process):
    overlay = ROOT / "experiments/beyond/pnfrec_plus.yaml"
    run_experiments([str(overlay), "--data", str(DATA), "--base", str(PNFREC), "--seeds", "1", "--out", str(tmp_path / "a"), "--", "--data.path", tiny_log, *TINY])
    config = yaml.safe_load((tmp_path / "a/runs/pnfrec_plus/seed42/config.yaml").read_text())
    assert (config["model"]["alpha"], config["model"]["beta"], config["model"]["demotion_decay"]) == (0.45, 0.25, 0.3)  # base, then overlay
    assert (config["data"]["batch_size"], config["select_monitor"], config["select_min_suppression"]) == (64, "val/ndcg_p@10", 0.3)
    assert (tmp_path / "a/selection.csv").is_file()
    # the positional form without --data: each config is complete
    complete = tmp_path / "sasrec_c.yaml"
    complete.write_text(DATA.read_text() + (ROOT / "experiments/models/sasrec_c.yaml").read_text())
    run_experiments([str(complete), "--seeds", "1", "--out", str(tmp_path / "b"), "--", "--data.path", tiny_log, *TINY])
    config = yaml.safe_load((tmp_path / "b/runs/sasrec_c/seed42/config.yaml").read_text())
    assert (config["model"]["family"], config["model"]["cosine"], config["data"]["split"]) == ("whole_history", True, "leave_last_out")


def test_runner_refuses_two_configs_of_one_name(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "pnfrec.yaml"
    twin.write_text(PNFREC.read_text())
    with pytest.raises(SystemExit) as exit:
        run_experiments([str(PNFREC), str(twin), "--data", str(DATA), "--out", str(tmp_path / "out")])
    assert exit.value.code == 2 and "['pnfrec']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runner_refuses_a_missing_data_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        run_experiments([str(PNFREC), "--data", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")])
    assert exit.value.code == 2 and "nope.yaml" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["negseq.studies.runner", "negseq.studies.compare"])
def test_a_failed_run_ends_the_runner_in_one_line_naming_its_log(runner, tmp_path, capsys):
    """The fit's own error is in the run's log; the runner says which run failed and where to look (a traceback before).
    The runner runs here as its ``python -m`` entry point runs it; its fits are real subprocesses."""
    configs = [str(PNFREC)] if runner == "negseq.studies.runner" else [str(PNFREC), str(ROOT / "experiments" / "models" / "sasrec.yaml")]
    main = run_experiments if runner == "negseq.studies.runner" else compare_main
    with pytest.raises(SystemExit) as exit:  # a traceback would be another exception
        run_cli(main, [*configs, "--seeds", "1", "--out", str(tmp_path / "out"), "--", "--data.path", str(tmp_path / "no.csv")])
    assert exit.value.code == 2
    log = tmp_path / "out" / "runs" / "pnfrec" / "seed42.log"
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: pnfrec seed 42 failed (exit 2); see {log}"
    assert "no.csv" in log.read_text()
