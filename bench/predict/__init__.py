"""`segbench predict` and `segbench export`: a trained cell on your own images, folders of images and videos, and
as a deployable ONNX model.

inputs.py reads images, folders and videos; outputs.py writes label PNGs, overlays and the overlay video; timing.py
holds the per-frame timing split; prediction.py joins them (segbench.cell.trained rebuilds a cell's model from its
folder); export.py exports a cell to ONNX (and INT8) with its parity figures, and gives predict the exported model
for `--runtime onnxruntime`; staging.py writes an output folder whole or not at all.

Must not import `cli`, the only later stage (docs/architecture.md, "What a stage may import";
tests/test_import_rules.py).
"""

from segbench.cell.trained import TrainedCell, load_trained_cell
from segbench.predict.export import EXPORT_FILE, Export, export_cell
from segbench.predict.prediction import MANIFEST_FILE, Prediction, predict

__all__ = ["EXPORT_FILE", "MANIFEST_FILE", "Export", "Prediction", "TrainedCell", "export_cell", "load_trained_cell",
           "predict"]
