"""experiments/: every data section composes with every model section and overlay, parses and instantiates in the CLI.

A run is ``--config experiments/data/<dataset>.yaml --config experiments/models/<model>.yaml`` (and for a
beyond-the-paper option ``--config experiments/beyond/<option>.yaml`` over PNFRec's model section).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from negseq.data.formats import FORMATS
from negseq.training.cli import NegSeqCLI

ROOT = Path(__file__).parents[1]
EXPERIMENTS = ROOT / "experiments"
FIXTURES = Path(__file__).parent / "data" / "fixtures"
MODELS = sorted(p.stem for p in (EXPERIMENTS / "models").glob("*.yaml"))
BEYOND = sorted(p.stem for p in (EXPERIMENTS / "beyond").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (EXPERIMENTS / "data").glob("*.yaml"))
# a small file in each dataset's published layout; None: the embedded ml-latest-small; "tiny": conftest's generic log
DATA_FILES = {
    "ml-latest-small": None,
    "synthetic": "tiny",
    "ml-1m": FIXTURES / "ml-1m" / "ratings.dat",
    "ml-20m": FIXTURES / "ml-20m" / "ratings.csv",
    "amazon-toys": FIXTURES / "amazon" / "Toys_and_Games_5.json",
    "kion": FIXTURES / "kion" / "interactions.csv",
    "zvuk": FIXTURES / "zvuk" / "zvuk-interactions.parquet",
    "ml-100k": FIXTURES / "ml-100k" / "u.data",
    "ciaodvd": FIXTURES / "ciaodvd" / "movie-ratings.txt",
    "steam-au": FIXTURES / "steam-au" / "user_reviews.csv",
}
STUDY_LOGS = {"ml-100k", "ciaodvd", "steam-au"}  # the logs of experiments/QUALITY.md's per-log rows: leave-last-out, every user
# the loss keys every model file sets, so that a model file replaces whatever an earlier config set
LOSS_KEYS = {"family", "alpha", "beta", "temperature", "cosine", "unlikelihood_weight", "sign_weight"}
RANKING_WEIGHTS = ("negative_scoring", "dislike_demotion", "polarity_prior", "sign_scoring")


def load(*parts: str) -> dict:
    return yaml.safe_load((EXPERIMENTS.joinpath(*parts)).read_text())


def compose(model: str) -> list[Path]:
    if model in BEYOND:
        return [EXPERIMENTS / "models" / "pnfrec.yaml", EXPERIMENTS / "beyond" / f"{model}.yaml"]
    return [EXPERIMENTS / "models" / f"{model}.yaml"]


def test_the_models_datasets_and_overlays_ship():
    assert set(MODELS) == {
        "pnfrec", "pnfrec_ce", "pnfrec_cl", "sasrec_p", "sasrec", "sasrec_c", "sasrec_negw", "signed", "signed_ul", "signed_cl", "signed_sign", "sasrec_p_ul",
        "sasrec_p_prior", "pnfrec_prior", "signed_prior",
    }
    assert set(DATASETS) == set(DATA_FILES)
    assert "pnfrec_plus" in BEYOND and not set(BEYOND) & set(MODELS)  # a run is named after its last file: no clash


@pytest.mark.parametrize("model", MODELS)
def test_model_files_hold_a_model_section_with_every_loss_key(model):
    """A model file sets every loss key; one that ranks with weights chosen after the fit (the ``*_prior`` files) also sets
    the candidates, the rule and the validation users the rule needs, and nothing of the dataset's."""
    config = load("models", f"{model}.yaml")
    assert set(config["model"]) - set(RANKING_WEIGHTS) == LOSS_KEYS
    chooses = {f"select_{name}" for name in RANKING_WEIGHTS} & set(config)
    assert set(config) - {"model", *chooses} == ({"data", "select_monitor", "select_within_noise"} if chooses else set())
    assert not chooses or config["data"] == {"validation_targets": "all"}


@pytest.mark.parametrize("option", BEYOND)
def test_overlays_change_only_what_differs_from_pnfrec(option):
    config, pnfrec = load("beyond", f"{option}.yaml"), load("models", "pnfrec.yaml")["model"]
    assert set(config) <= {"model", "data", "select_negative_scoring", "select_dislike_demotion", "select_tolerance", "select_min_suppression", "select_monitor"}
    assert all(pnfrec.get(key) != value for key, value in config.get("model", {}).items())
    assert set(config.get("data", {})) <= {"validation_targets"}  # the batch and the file are the dataset's


@pytest.mark.parametrize("dataset", DATASETS)
def test_data_files_hold_a_data_section_the_format_reads(dataset):
    config = load("data", f"{dataset}.yaml")
    assert set(config) == {"data"}  # trainer settings are the CLI's defaults, the same for every dataset
    data = config["data"]
    assert data["format"] == "auto" or data.get("threshold", FORMATS[data["format"]].threshold) == FORMATS[data["format"]].threshold
    the_papers = data["format"] != "auto" and dataset not in STUDY_LOGS  # the paper's datasets keep its temporal split
    assert data["split"] == ("temporal" if the_papers else "leave_last_out") and data["max_len"] == 50
    if dataset in STUDY_LOGS:
        assert data["holdout"] == "every_user"
    if isinstance(DATA_FILES[dataset], Path):  # the placeholder names the file the README says to download
        assert Path(data["path"]).name.removesuffix(".gz") == DATA_FILES[dataset].name


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS + BEYOND)
def test_every_composition_parses_and_instantiates(dataset, model, tiny_log, tmp_path):
    files = [EXPERIMENTS / "data" / f"{dataset}.yaml", *compose(model)]
    path = tiny_log if DATA_FILES[dataset] == "tiny" else DATA_FILES[dataset]
    args = [arg for file in files for arg in ("--config", str(file))]
    if isinstance(path, Path):  # a dozen events: no 5-core filter would leave any
        args += ["--data.path", str(path), "--data.min_item_users", "1", "--data.min_user_items", "1"]
    elif path:
        args += ["--data.path", path]
    cli = NegSeqCLI(run=False, args=[*args, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])
    # later files win key by key: the model's loss keys and the dataset's data keys both reach the objects
    expected_model = {key: value for file in files for key, value in yaml.safe_load(file.read_text()).get("model", {}).items()}
    assert {key: cli.model.hparams[key] for key in expected_model} == expected_model
    data = load("data", f"{dataset}.yaml")["data"]
    assert (cli.datamodule.batch_size, cli.datamodule.split_name, cli.datamodule.threshold) == (data["batch_size"], data["split"], data.get("threshold", 4.0))
    assert cli.model.hparams.num_items == cli.datamodule.num_items > 1
    assert cli.trainer.max_epochs == 100 and cli.run_dir.name.endswith(model)


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
@pytest.mark.parametrize("dataset", [None, *DATASETS])
def test_the_recommended_config_works_after_any_data_section_or_alone(dataset, tiny_log, tmp_path):
    recommended = EXPERIMENTS / "recommended.yaml"
    files = ([EXPERIMENTS / "data" / f"{dataset}.yaml"] if dataset else []) + [recommended]
    path = tiny_log if dataset and DATA_FILES[dataset] == "tiny" else DATA_FILES[dataset] if dataset else None
    args = [arg for file in files for arg in ("--config", str(file))]
    if isinstance(path, Path):
        args += ["--data.path", str(path), "--data.min_item_users", "1", "--data.min_user_items", "1"]
    elif path:
        args += ["--data.path", path]
    cli = NegSeqCLI(run=False, args=[*args, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])
    config = yaml.safe_load(recommended.read_text())
    model = config["model"]
    assert set(model) - set(RANKING_WEIGHTS) == LOSS_KEYS and {key: cli.model.hparams[key] for key in model} == model
    assert cli.datamodule.validation_targets == config.get("data", {}).get("validation_targets", "positive")  # what its choice needs
    chosen_on = {f"select_{name}" for name in RANKING_WEIGHTS} & set(config)
    assert {name: cli.config[name] for name in chosen_on} == {name: config[name] for name in chosen_on}
    if dataset:  # the data section's settings reach the DataModule untouched
        assert cli.datamodule.batch_size == load("data", f"{dataset}.yaml")["data"]["batch_size"]
