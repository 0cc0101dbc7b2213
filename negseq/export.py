"""A trained run as files for serving outside negseq: the user encoder as a ``torch.export`` program (and ONNX), the
item matrix and the vocabulary, so that an ANN index can score ``user_vector @ items.T``.

The program maps ``(B, L)`` left-padded item codes (0 is padding; the user's liked items, or the
whole history for a ``history: all`` model) and ``(B, L)`` disliked items to ``(B, D)`` user
vectors, with the run's negative-scoring weight built in; row ``r`` of ``items.npy`` is the item
of code ``r + 1`` in ``items.parquet``. The batch dimension is dynamic.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from negseq.models.recommender import SequentialRecommender
from negseq.serving import Recommender

PROGRAM_FILE = "user_encoder.pt2"
ONNX_FILE = "user_encoder.onnx"
ITEMS_FILE = "items.npy"
VOCABULARY_FILE = "items.parquet"
MANIFEST_FILE = "export.json"


class UserEncoder(nn.Module):
    """``(B, L)`` inputs and ``(B, L)`` disliked items -> ``(B, D)`` user vectors, the negative-scoring weight a constant."""

    def __init__(self, model: SequentialRecommender, negative_scoring: float) -> None:
        super().__init__()
        self.model = model
        self.negative_scoring = negative_scoring

    def forward(self, inputs: Tensor, negatives: Tensor) -> Tensor:
        return self.model.user_vectors(inputs, negatives, self.negative_scoring)


def export_run(source: str | Path, out: str | Path) -> dict[str, str]:
    """Write the program, ``items.npy`` ``(N, D)`` float32, ``items.parquet`` (code, item_id, title), ``export.json``
    (and ``user_encoder.onnx`` when the ``onnx`` package is installed) to ``out``; returns the files by role."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recommender = Recommender.load(source)
    encoder = UserEncoder(recommender.model, float(recommender.model.negative_scoring)).eval()
    length = recommender.catalog.max_len
    example = (torch.ones(2, length, dtype=torch.long), torch.ones(2, length, dtype=torch.long))
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, {0: batch})
    files = {"program": out / PROGRAM_FILE, "items": out / ITEMS_FILE, "vocabulary": out / VOCABULARY_FILE, "manifest": out / MANIFEST_FILE}
    with torch.no_grad():
        torch.export.save(torch.export.export(encoder, example, dynamic_shapes=dynamic), files["program"])
        if importlib.util.find_spec("onnx") is not None:
            files["onnx"] = out / ONNX_FILE
            torch.onnx.export(encoder, example, files["onnx"], input_names=["inputs", "negatives"], output_names=["users"], dynamo=True, dynamic_shapes=dynamic)
    np.save(files["items"], recommender.model.items.weight[1:].detach().float().cpu().numpy())
    recommender.catalog.frame().write_parquet(files["vocabulary"])
    manifest = {
        "inputs": ["positives" if recommender.history == "positives" else "history", "negatives"],
        "max_len": length,
        "padding": "item code 0, on the left (the newest item in the last column)",
        "score": "user_vector @ items.T; row r of items.npy is item code r + 1 of items.parquet",
        "negative_scoring": encoder.negative_scoring,
        "history": recommender.history,
    }
    files["manifest"].write_text(json.dumps(manifest, indent=2) + "\n")
    return {role: str(path) for role, path in files.items()}
