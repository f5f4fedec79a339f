"""Whether hybrid_explain/trust/conformal.py's LAC sets are crepes's (the well-kept library for split conformal
prediction), on synthetic exchangeable data: 4 classes, 2,000 new rows, calibration sets of 10 to 1,000 rows.

    pip install crepes && python bench/conformal_vs_crepes.py

crepes's ConformalClassifier with its hinge score (1 - p of the class, LAC) and smoothing=False against
conformal.prediction_sets at the same level; prints the share of (row, class) cells on which they agree and
the mean set sizes.
"""
import os
import sys

import numpy as np
from scipy.special import softmax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hybrid_explain.trust import conformal  # noqa: E402


def main(level=0.9, classes=4, new_rows=2000, seed=0):
    try:
        from crepes import ConformalClassifier
        from crepes.extras import hinge
    except ImportError:
        sys.exit("error: this comparison needs crepes: pip install crepes")
    rng = np.random.default_rng(seed)
    print("| calibration rows | cells that agree | mean set size, crepes | mean set size, conformal.py |")
    print("|---|---|---|---|")
    for held_out in (10, 30, 100, 1000):
        logits = rng.normal(0, 3, (held_out + new_rows, classes))
        labels = (rng.random(len(logits))[:, None] > np.cumsum(softmax(logits, 1), 1)).sum(1)
        probabilities = softmax(logits / 2, 1)  # a miscalibrated model: the sets' guarantee does not need calibration
        cal, new = slice(0, held_out), slice(held_out, None)
        fitted = ConformalClassifier().fit(hinge(probabilities[cal], np.arange(classes), labels[cal]))
        theirs = fitted.predict_set(hinge(probabilities[new]), confidence=level, smoothing=False).astype(bool)
        ours = conformal.prediction_sets(probabilities[new], conformal.threshold(
            conformal.true_class_scores(probabilities[cal], labels[cal]), level))
        print(f"| {held_out} | {(theirs == ours).mean():.4f} | {theirs.sum(1).mean():.3f} | {ours.sum(1).mean():.3f} |")


if __name__ == "__main__":
    main()
