"""Train a nearest-centroid digits classifier and store it with its helper module.

    python examples/custom_model/train.py      # stores into PALLET_HOME (default ~/.pallet)
    pallet serve digits-centroids
"""

from pathlib import Path

from centroids import CentroidClassifier
from sklearn.datasets import load_digits

import pallet

HERE = Path(__file__).resolve().parent


def main() -> None:
    pixels, labels = load_digits(return_X_y=True)
    model = CentroidClassifier().fit(pixels[:1500], labels[:1500])
    accuracy = float((model.predict({"pixels": pixels[1500:]})["label"] == labels[1500:]).mean())
    ref = pallet.save(model, "digits-centroids", sample={"pixels": pixels[:5]}, metrics={"accuracy": accuracy},
                      code_paths=[HERE / "features.py"])
    stored = pallet.load(ref)  # the stored copy of centroids.py and features.py, not these files
    held_out = {"pixels": pixels[1500:]}
    assert (stored.predict(held_out)["label"] == model.predict(held_out)["label"]).all()
    print(f"stored {ref}: accuracy {accuracy:.3f} on {len(labels) - 1500} held-out digits")


if __name__ == "__main__":
    main()
