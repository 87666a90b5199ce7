"""Per-image intersection and union counts against per-image confusion matrices (an independent computation)."""

import numpy as np
import torch

from segbench.cell.evaluate import per_image_class_counts
from segbench.metrics.confusion import confusion_matrix


def test_per_image_counts_equal_those_of_each_image_confusion_matrix():
    generator = torch.Generator().manual_seed(0)
    classes = 5
    pred = torch.randint(0, classes, (4, 7, 9), generator=generator)
    labels = torch.randint(0, classes, (4, 7, 9), generator=generator)
    labels[0, 0, :] = 255  # ignore pixels are never counted, whatever was predicted there
    labels[3] = 255  # an image without a valid pixel
    intersection, union = per_image_class_counts(pred, labels, classes, 255)
    assert intersection.shape == union.shape == (4, classes)
    for image in range(4):
        matrix = confusion_matrix(pred[image : image + 1], labels[image : image + 1], classes, 255).numpy()
        true_positives = np.diag(matrix)
        assert np.array_equal(intersection[image].numpy(), true_positives)
        assert np.array_equal(union[image].numpy(), matrix.sum(0) + matrix.sum(1) - true_positives)
    assert union[3].sum() == 0
    # pooled over images, the counts give the split's matrix diagonal and unions
    pooled = confusion_matrix(pred, labels, classes, 255).numpy()
    assert np.array_equal(intersection.sum(0).numpy(), np.diag(pooled))
