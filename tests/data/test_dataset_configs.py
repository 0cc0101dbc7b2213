"""experiments/<dataset>/: the six models of the paper per dataset, the same model sections as ml-latest-small, a data section each format reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from negseq.data import FeedbackDataModule
from negseq.data.io import FORMATS

ROOT = Path(__file__).parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
MODELS = ["pnfrec", "pnfrec_ce", "pnfrec_cl", "sasrec_p", "sasrec", "sasrec_c"]
DATASETS = {
    "ml-1m": FIXTURES / "ml-1m" / "ratings.dat",
    "ml-20m": FIXTURES / "ml-20m" / "ratings.csv",
    "amazon-toys": FIXTURES / "amazon" / "Toys_and_Games_5.json",
    "kion": FIXTURES / "kion" / "interactions.csv",
    "zvuk": FIXTURES / "zvuk" / "zvuk-interactions.parquet",
}


def load(dataset: str, model: str) -> dict:
    return yaml.safe_load((ROOT / "experiments" / dataset / f"{model}.yaml").read_text())


@pytest.mark.parametrize("dataset", DATASETS)
def test_six_configs_with_the_reference_model_sections(dataset):
    assert sorted(p.stem for p in (ROOT / "experiments" / dataset).glob("*.yaml")) == sorted(MODELS)
    for model in MODELS:
        assert load(dataset, model)["model"] == load("ml-latest-small", model)["model"], model


@pytest.mark.parametrize("dataset", DATASETS)
def test_data_sections(dataset):
    sections = [load(dataset, model)["data"] for model in MODELS]
    assert all(section == sections[0] for section in sections)
    data = sections[0]
    assert data["format"] in FORMATS and data["threshold"] == FORMATS[data["format"]].threshold
    assert data["split"] == "temporal" and data["max_len"] == 50
    assert Path(data["path"]).name.removesuffix(".gz") == DATASETS[dataset].name  # the placeholder names the file the README says to download


@pytest.mark.parametrize("dataset", DATASETS)
def test_data_section_reads_the_fixture(dataset):
    data = {**load(dataset, "pnfrec")["data"], "path": str(DATASETS[dataset]), "split": "leave_last_out", "min_item_users": 1, "min_user_items": 1}
    module = FeedbackDataModule(**data)
    assert module.split.train.height > 0 and module.num_items > 1


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
def test_configs_parse_in_the_cli(capsys):
    from negseq.fit import main as fit_main

    for dataset in DATASETS:
        with pytest.raises(SystemExit) as exit:
            fit_main(["--config", str(ROOT / "experiments" / dataset / "sasrec_c.yaml"), "--print_config"])
        assert exit.value.code == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["data"]["format"] == load(dataset, "sasrec_c")["data"]["format"]
        assert printed["model"]["cosine"] is True
