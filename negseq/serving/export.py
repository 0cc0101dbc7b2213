"""A trained run as files for serving outside negseq: the user encoder as a ``torch.export`` program (and ONNX), the
item matrix, the vocabulary, and ``export.json``, the contract a caller follows to rank as negseq ranks.

The program maps ``(B, L)`` left-padded item codes (0 is padding, the newest item in the last column; what the model
reads, :func:`negseq.models.inference.model_input`) and ``(B, L)`` the user's last disliked codes to ``(B, D)`` user vectors,
the run's negative-scoring and sign-scoring weights built in, and ``(B, R, D)`` demotion vectors (zeros when the run has no dislike
demotion); row ``r`` of ``items.npy`` is the item of code ``r + 1`` in ``items.parquet``. The batch dimension is dynamic.
What the caller still does (export.json ``caller``, :data:`POST_PROCESSING`): the demotion term, the item-polarity
prior (``items.parquet``'s ``prior`` column, the run's weight already applied), seen-item filtering and the popularity
fallback, as :func:`negseq.models.inference.rank` does them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import Tensor, nn

from negseq.models import ranking_weights
from negseq.models.families import family
from negseq.models.recommender import SequentialRecommender
from negseq.serving.api import Recommender

PROGRAM_FILE = "user_encoder.pt2"
ONNX_FILE = "user_encoder.onnx"
ITEMS_FILE = "items.npy"
VOCABULARY_FILE = "items.parquet"
MANIFEST_FILE = "export.json"


POST_PROCESSING = [
    "score_j = users @ items[j] - max(0, max_r demote[r] @ items[j] / |items[j]|) + prior[j]: the second term is 0 without "
    "dislike demotion, prior (items.parquet) is 0 without the item-polarity prior",
    "compute scores in fp64 and round once to fp32, then order by score descending and the smaller code: negseq's exact order",
    "exclude the user's seen items (every item of its history, both signs) and any blocked ones",
    "a user whose model input is all padding gets the fallback: items.parquet's popularity (liked training events), seen items excluded",
]


class UserEncoder(nn.Module):
    """``(B, L)`` inputs and ``(B, L)`` disliked items -> ``(B, D)`` user vectors and ``(B, R, D)`` demotion vectors, the
    ranking weights constants."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model
        self.weights = ranking_weights.read(model)  # Python numbers: constants of the program

    def forward(self, inputs: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        users = self.model.user_vectors(inputs, negatives, self.weights["negative_scoring"], self.weights["sign_scoring"])
        demote = self.model.demotion(negatives, self.weights["dislike_demotion"])
        if demote is None:  # no demotion: zero vectors, so that every run's program has the same outputs
            demote = torch.zeros_like(users)[:, None, :]  # (B, 1, D)
        return users, demote


def export_run(source: str | Path, out: str | Path) -> dict[str, str]:
    """Write the program, ``items.npy`` ``(N, D)`` float32, ``items.parquet`` (code, item_id, title, popularity, prior), ``export.json``
    (and ``user_encoder.onnx`` when the ``onnx`` package is installed) to ``out``; returns the files by role."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recommender = Recommender.load(source)
    encoder = UserEncoder(recommender.model).eval()
    length = recommender.catalog.max_len
    example = (torch.ones(2, length, dtype=torch.long), torch.ones(2, length, dtype=torch.long))
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, {0: batch})
    files = {"program": out / PROGRAM_FILE, "items": out / ITEMS_FILE, "vocabulary": out / VOCABULARY_FILE, "manifest": out / MANIFEST_FILE}
    with torch.no_grad():
        torch.export.save(torch.export.export(encoder, example, dynamic_shapes=dynamic), files["program"])
        if importlib.util.find_spec("onnx") is not None:
            files["onnx"] = out / ONNX_FILE
            torch.onnx.export(encoder, example, files["onnx"], input_names=["inputs", "negatives"], output_names=["users", "demote"], dynamo=True, dynamic_shapes=dynamic)
    np.save(files["items"], recommender.model.items.weight[1:].detach().float().cpu().numpy())
    catalog = recommender.catalog
    bias = recommender.model.item_bias()
    prior = np.zeros(catalog.num_items, dtype=np.float32) if bias is None else bias[1:].detach().float().cpu().numpy()
    catalog.frame().with_columns(popularity=pl.Series(catalog.popularity[1:].float().numpy()), prior=pl.Series(prior)).write_parquet(files["vocabulary"])
    manifest = {
        "inputs": [family(recommender.family).reads, "negatives"],
        "family": recommender.family,
        "max_len": length,
        "padding": "item code 0, on the left (the newest item in the last column)",
        "outputs": ["users (B, D)", "demote (B, R, D)"],
        "score": "users @ items.T - max(0, max_r demote_r @ unit(items).T) + prior; row r of items.npy is item code r + 1 of items.parquet",
        "caller": POST_PROCESSING,
        **ranking_weights.manifest(recommender.model),
    }
    files["manifest"].write_text(json.dumps(manifest, indent=2) + "\n")
    return {role: str(path) for role, path in files.items()}
