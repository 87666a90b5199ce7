"""`segbench predict`: a trained cell on your own images, folders of images and videos.

inputs.py reads images, folders and videos; trained.py rebuilds a cell's model from its folder; outputs.py writes label
PNGs, overlays and the overlay video; timing.py holds the per-frame timing split; prediction.py joins them.

Must not import `cli`, the only later stage (docs/architecture.md, "What a stage may import";
tests/test_import_rules.py).
"""

from segbench.cell.trained import TrainedCell, load_trained_cell
from segbench.predict.prediction import MANIFEST_FILE, Prediction, predict

__all__ = ["MANIFEST_FILE", "Prediction", "TrainedCell", "load_trained_cell", "predict"]
