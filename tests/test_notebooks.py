"""negseq.analysis on real run directories, and both notebooks executed headless on them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import matplotlib
import nbformat
import polars as pl
import pytest
import yaml
from nbclient import NotebookClient

from negseq import analysis
from negseq.fit import main as fit_main

matplotlib.use("Agg")

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def make_log():
    """tests/conftest.py's ``make_log``, for fixtures wider than one test (``tiny_log`` is per test)."""
    spec = importlib.util.spec_from_file_location("_negseq_tests_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_log()


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """Two tiny finished runs, as `python -m negseq.fit` leaves them: the default (PNFRec) and sasrec.yaml."""
    tmp = tmp_path_factory.mktemp("finished")
    log = tmp / "log.csv"
    make_log().write_csv(log)
    root = tmp / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        patch.setenv("WANDB_SILENT", "true")
        fit_main(["--data.path", str(log), "--trainer.default_root_dir", str(root), *FAST])
        fit_main(["--config", str(ROOT / "experiments/data/ml-latest-small.yaml"), "--config", str(ROOT / "experiments/models/sasrec.yaml"), "--data.path", str(log), "--trainer.default_root_dir", str(root), *FAST])
    return root


def run_dir_of(runs: pl.DataFrame, model: str) -> Path:
    return Path(runs.filter(pl.col("model") == model).get_column("run_dir").item())


# -- loading --


def test_load_runs_one_row_per_run_with_config_and_metrics(runs_root):
    runs = analysis.load_runs(runs_root)
    assert runs.height == 2
    assert runs.get_column("model").to_list() == ["PNFRec", "SASRec"]
    assert runs.get_column("config").to_list() == ["negseq", "sasrec"]
    assert runs.get_column("seed").to_list() == [42, 42]
    assert runs.get_column("source").to_list() == ["local", "local"]
    assert runs.get_column("model.family").to_list() == ["sign_separated", "whole_history"]
    assert runs.get_column("dataset").to_list() == ["log.csv", "log.csv"]
    assert runs.get_column("epochs").to_list() == [2, 2]
    for row in runs.iter_rows(named=True):
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert {key: row[key] for key in metrics} == metrics
        assert row["recommended_users"] == metrics["test/n_users_pos"] + metrics["test/n_users_neg"]
        assert row["wandb_id"] is None  # W&B disabled: no W&B run, no id


def test_load_history_and_recommendations(runs_root):
    runs = analysis.load_runs(runs_root)
    history = analysis.load_history(runs_root)
    assert history.select("model", "epoch").rows() == [("PNFRec", 1), ("PNFRec", 2), ("SASRec", 1), ("SASRec", 2)]
    assert history.filter(pl.col("model") == "PNFRec").get_column("train/loss_neg").null_count() == 0
    assert history.filter(pl.col("model") == "SASRec").get_column("train/loss_neg").null_count() == 2  # SASRec has no CE_neg
    assert history.filter(pl.col("model") == "SASRec").get_column("train/loss_next").null_count() == 0
    recommendations = analysis.load_recommendations(runs_root)
    assert recommendations.height == sum(pl.read_parquet(Path(d) / "recommendations.parquet").height for d in runs.get_column("run_dir"))
    assert {"user_id", "item_id", "rank", "score", "run_dir", "config", "model", "seed"} <= set(recommendations.columns)


def test_experiments_layout_and_runs_dir_lookup(runs_root, tmp_path, monkeypatch):
    # python -m negseq.experiments: OUT/runs/<config>/seed<N>/, run_name "<config>-seed<N>"
    source = run_dir_of(analysis.load_runs(runs_root), "SASRec")
    target = tmp_path / "out" / "runs" / "sasrec" / "seed7"
    shutil.copytree(source, target)
    config = yaml.safe_load((target / "config.yaml").read_text())
    config.update(run_name="sasrec-seed7", seed_everything=7)
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    runs = analysis.load_runs(tmp_path / "out" / "runs")
    assert runs.select("config", "model", "seed").rows() == [("sasrec", "SASRec", 7)]

    monkeypatch.setenv(analysis.ENV_RUNS_DIR, str(tmp_path / "out" / "runs"))
    assert analysis.runs_dir() == tmp_path / "out" / "runs"
    monkeypatch.delenv(analysis.ENV_RUNS_DIR)
    (tmp_path / "repo" / "runs").mkdir(parents=True)
    (tmp_path / "repo" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "notebooks")
    assert analysis.runs_dir() == tmp_path / "repo" / "runs"  # the CLI's runs/, found from notebooks/
    with pytest.raises(FileNotFoundError, match=analysis.ENV_RUNS_DIR):
        analysis.load_runs(tmp_path / "missing")


@pytest.mark.parametrize(
    "config, label",
    [("pnfrec", "PNFRec"), ("pnfrec_ce", "PNFRec CE+CE"), ("pnfrec_cl", "PNFRec CE+contrast"), ("sasrec", "SASRec"),
     ("sasrec_c", "SASRec_c"), ("sasrec_negw", "SASRec+unlikelihood"), ("sasrec_p", "SASRec_p"),
     ("pnfrec_plus", "PNFRec"), ("signed", "Signed SASRec"), ("signed_ul", "Signed SASRec + unlikelihood"),
     ("signed_cl", "Signed SASRec + contrast"), ("signed_sign", "Signed SASRec + sign head"), ("sasrec_p_prior", "SASRec_p + polarity prior"),
     ("pnfrec_prior", "PNFRec + polarity prior"), ("signed_prior", "Signed SASRec + sign head + sign scoring + polarity prior")],  # PNFRec training; its ranking weights are chosen after the fit (group by config)
)
def test_model_label_of_each_shipped_config(config, label):
    files = [ROOT / "experiments" / "models" / f"{config}.yaml"] if config != "pnfrec_plus" else [ROOT / "experiments" / "models" / "pnfrec.yaml", ROOT / "experiments" / "beyond" / "pnfrec_plus.yaml"]
    model = {key: value for file in files for key, value in yaml.safe_load(file.read_text())["model"].items()}  # composed as --config does
    assert analysis.model_label(model) == label


# -- table and plots --


def test_summary_table_reuses_the_results_table(runs_root):
    runs = analysis.load_runs(runs_root)
    table = analysis.summary_table(runs)
    assert table.splitlines()[0] == "| | PNFRec (n=1) | SASRec (n=1) |"
    assert analysis.summary_table(runs, by="config").splitlines()[0] == "| | negseq (n=1) | sasrec (n=1) |"
    stats = analysis.metric_stats(runs, ["test/hr_p@10"])
    assert stats.get_column("test/hr_p@10:mean").to_list() == pytest.approx(runs.get_column("test/hr_p@10").to_list())
    assert stats.get_column("test/hr_p@10:sd").to_list() == [0.0, 0.0]


def test_plots_are_labelled_with_legends(runs_root):
    import matplotlib.pyplot as plt

    runs, history = analysis.load_runs(runs_root), analysis.load_history(runs_root)
    axes = [
        analysis.plot_hr_scatter(runs),
        analysis.plot_delta_bars(runs),
        *analysis.plot_validation_curves(history),
        analysis.plot_training_time(runs),
    ]
    assert len(axes) == 5
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        legend = ax.get_legend()
        assert legend is not None and legend.get_texts()
    texts = {text.get_text() for text in axes[0].get_legend().get_texts()}
    assert {"PNFRec (n=1)", "SASRec (n=1)"} <= texts
    assert "(s" in axes[-1].get_ylabel()  # the time axis says its unit
    plt.close("all")


# -- one user's recommendations from the checkpoints --


def test_recommend_for_user_reproduces_the_written_recommendations(runs_root):
    runs = analysis.load_runs(runs_root)
    for model_name in ("PNFRec", "SASRec"):
        run_dir = run_dir_of(runs, model_name)
        data, model = analysis.run_datamodule(run_dir), analysis.load_model(run_dir / "checkpoints" / "best.ckpt")
        written = pl.read_parquet(run_dir / "recommendations.parquet")
        for user in written.get_column("user_id").unique().sort().head(3):
            fresh = analysis.recommend_for_user(model, data, user)
            assert fresh.get_column("item_id").to_list() == written.filter(pl.col("user_id") == user).sort("rank").get_column("item_id").to_list()


def test_compare_marks_the_held_out_item_and_pick_user_finds_one(runs_root):
    runs = analysis.load_runs(runs_root)
    chosen = analysis.default_comparison(runs)
    assert list(chosen) == ["PNFRec", "SASRec"]
    data = analysis.run_datamodule(chosen["PNFRec"])
    saved = {name: pl.read_parquet(Path(d) / "recommendations.parquet") for name, d in chosen.items()}
    user = analysis.pick_user(data, saved)
    target = data.test_targets().filter(pl.col("user_id") == user).row(0, named=True)
    assert not target["positive"]  # the tiny log has users whose held-out item was disliked
    models = {name: analysis.load_model(d) for name, d in chosen.items()}
    table = analysis.compare_recommendations(data, user, models, rows=10)
    assert table.columns == ["rank", "liked (newest first)", "disliked (newest first)", "PNFRec top-10", "SASRec top-10"]
    promoted = [name for name, frame in saved.items() if frame.filter((pl.col("user_id") == user) & (pl.col("item_id") == target["item_id"])).height]
    for name in ("PNFRec", "SASRec"):
        marked = [cell for cell in table.get_column(f"{name} top-10") if analysis.LATER_DISLIKED in cell]
        assert marked == ([f"{target['item_id']}  {analysis.LATER_DISLIKED}"] if name in promoted else [])
    events = analysis.user_events(data, user)
    liked = events.filter(pl.col("positive") & ~pl.col("is_target")).get_column("item_id").reverse().cast(pl.String).to_list()[:10]
    assert [cell for cell in table.get_column("liked (newest first)") if cell] == liked


# -- the notebooks --


def test_notebooks_are_committed_without_outputs():
    assert [path.name for path in NOTEBOOKS] == ["01_results.ipynb", "02_recommendations.ipynb", "03_negative_feedback.ipynb"]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
                assert "def " not in cell.source, f"{path.name}: functions belong in negseq.analysis"


def execute(path: Path, monkeypatch, runs_root: Path) -> nbformat.NotebookNode:
    monkeypatch.setenv(analysis.ENV_RUNS_DIR, str(runs_root))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend renders the figures into the outputs
    # the kernel imports this checkout's negseq, not whichever copy the environment has installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def outputs(notebook, kind: str) -> list:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs if kind in out.get("data", {}) or out.get("output_type") == kind]


@pytest.mark.slow
def test_results_notebook_runs_headless(monkeypatch, runs_root):
    notebook = execute(ROOT / "notebooks" / "01_results.ipynb", monkeypatch, runs_root)
    assert len(outputs(notebook, "image/png")) == 4  # scatter, delta bars, validation curves, training time
    (table,) = outputs(notebook, "text/markdown")
    assert "| | PNFRec (n=1) | SASRec (n=1) |" in table["data"]["text/markdown"]
    text = "".join(out.get("text", "") for out in outputs(notebook, "stream"))
    assert f"runs directory: {runs_root.resolve()}" in text and "2 runs, 4 epoch rows" in text


@pytest.mark.slow
def test_recommendations_notebook_runs_headless(monkeypatch, runs_root):
    notebook = execute(ROOT / "notebooks" / "02_recommendations.ipynb", monkeypatch, runs_root)
    text = "".join(out.get("text", "") for out in outputs(notebook, "stream"))
    assert "PNFRec: same as recommendations.parquet: True" in text
    assert "SASRec: same as recommendations.parquet: True" in text
    assert "-> disliked" in text
    html = "".join(out["data"].get("text/html", "") for out in outputs(notebook, "text/html"))
    assert "PNFRec top-10" in html and "SASRec top-10" in html


@pytest.mark.slow
def test_negative_feedback_notebook_runs_on_the_committed_results(monkeypatch, runs_root):
    notebook = execute(ROOT / "notebooks" / "03_negative_feedback.ipynb", monkeypatch, runs_root)
    configs = pl.read_csv(ROOT / "experiments" / "ml-latest-small" / "beyond" / "selection.csv")["config"].n_unique()
    # scatter, a lambda plot per config that chose lambda, synthetic x 2, responsiveness of the arms and of the runs
    assert len(outputs(notebook, "image/png")) == 1 + configs + 2 + 2
    tables = [out["data"]["text/markdown"] for out in outputs(notebook, "text/markdown")]
    assert len(tables) == 3 + 2 and all("| HR_p@10 |" in table for table in tables[:2])  # + a heading per model
    assert "| test/neighbour_suppression@10 |" in tables[2]
    text = "".join(out.get("text", "") for out in outputs(notebook, "stream"))
    assert "2 of 2 runs report responsiveness" in text
    html = "".join(out["data"].get("text/html", "") for out in outputs(notebook, "text/html"))
    assert "after dislike" in html and "first excluded" in html


def test_model_labels_name_the_options_beyond_the_paper():
    assert analysis.model_label({"contrast_negatives": "earlier", "fusion": "gated", "hard_negative_weight": 1.0}) == (
        "PNFRec + contrast with earlier dislikes + hard negatives + gated fusion"
    )
    assert analysis.model_label({"beta": 0.0, "negative_scoring": 0.5}) == "PNFRec CE+CE + negative scoring"
    assert analysis.model_label({"negative_scoring": 0.5, "dislike_demotion": 2.0}) == "PNFRec + negative scoring + dislike demotion"
    assert analysis.model_label({"family": "whole_history", "alpha": 0.0, "beta": 0.0, "dislike_demotion": 1.0}) == "SASRec + dislike demotion"
    assert analysis.model_label({"alpha": 0.0, "beta": 0.0, "cosine": True}) == "SASRec_p"  # no contrast: cosine plays no part
