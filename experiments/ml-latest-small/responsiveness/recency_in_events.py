"""Prototype behind RESULTS.md's "recency in events" rows: dislike demotion whose decay counts the events (liked or
disliked) since each dislike instead of its rank among the dislikes. Not a package option (it was no better).

    PYTHONPATH=. python experiments/ml-latest-small/responsiveness/recency_in_events.py RUN OUT.jsonl

RUN: a finished PNFRec run directory (config.yaml, checkpoints/best.ckpt; made with --data.holdout every_user). For
PNFRec's ranking and each (age, gamma, lambda) it appends to OUT.jsonl the validation and test metrics, the
responsiveness ones included; RESULTS.md applies pnfrec_plus's rule (validation suppression >= 0.3, then the best
validation NDCG_p@10) to each arm. The age of a dislike is found by its item id in the mixed history, which is exact
on MovieLens (one rating per user and item), and not on logs with repeated items.
"""

import json
import sys
from pathlib import Path

import torch
import yaml
from torch import nn

from negseq.training.cli import NegSeqCLI
from negseq.training.selection import load_weights, set_weights

ARMS = [("dislikes", 0.3), ("events", 0.5), ("events", 0.05)]
LAMBDAS = [1.0, 1.5, 2.0, 3.0]
KEEP = ["hr_p@10", "ndcg_p@10", "hr_n@10", "neighbour_suppression@10", "list_change@10"]

run, out = Path(sys.argv[1]), Path(sys.argv[2])
config = yaml.safe_load((run / "config.yaml").read_text())
for key in ("ckpt_path", "weights_only"):
    config.pop(key, None)
config["run_dir"] = str(out.with_suffix(".tmp"))
config_file = out.with_suffix(".config.yaml")
config_file.write_text(yaml.safe_dump(config))
cli = NegSeqCLI(args=["--config", str(config_file), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"], run=False)
module, data, trainer = cli.model, cli.datamodule, cli.trainer
load_weights(module, run / "checkpoints" / "best.ckpt")
module.respond_in_validation = True
recommender = module.model
arm = {"age": "dislikes", "gamma": 0.3, "history": None}

for name in ("rank_batch", "recommend_batch"):  # keep each batch's mixed history for the demotion below
    original = getattr(type(module), name)
    def keeping_history(self, batch, *args, _original=original):
        arm["history"] = batch["history"]
        return _original(self, batch, *args)
    setattr(type(module), name, keeping_history)


def demotion(negatives: torch.Tensor) -> torch.Tensor | None:
    weight = float(recommender.dislike_demotion)
    if not weight:
        return None
    window = negatives[:, -recommender.demotion_window :]  # (B, R), the newest last
    if arm["age"] == "dislikes":
        age = torch.arange(window.shape[1] - 1, -1, -1, dtype=torch.float32).expand(window.shape)
    else:
        history = arm["history"]  # (B, L) mixed, the newest last
        found = (history[:, None, :] == window[:, :, None]) & (window[:, :, None] > 0)  # (B, R, L)
        position = torch.where(found, torch.arange(history.shape[1]), -1).max(dim=2).values  # (B, R)
        age = torch.where(position >= 0, history.shape[1] - 1 - position, 10_000).float()  # beyond the history: ~0 weight
    return weight * (arm["gamma"] ** age)[:, :, None] * nn.functional.normalize(recommender.items(window).float(), dim=-1)


recommender.demotion = demotion


def measure(weight: float) -> dict[str, float]:
    set_weights(module, {"negative_scoring": 0.0, "dislike_demotion": weight})
    (val,) = trainer.validate(module, datamodule=data, verbose=False)
    (test,) = trainer.test(module, datamodule=data, verbose=False)
    return {f"{stage}/{key}": float(values[f"{stage}/{key}"]) for stage, values in (("val", val), ("test", test)) for key in KEEP}


rows = [{"age": "none", "gamma": 0.0, "lambda": 0.0, **measure(0.0)}]
for age, gamma in ARMS:
    arm.update(age=age, gamma=gamma)
    rows += [{"age": age, "gamma": gamma, "lambda": weight, **measure(weight)} for weight in LAMBDAS]
with out.open("a") as file:
    file.writelines(json.dumps({"run": str(run), **row}) + "\n" for row in rows)
