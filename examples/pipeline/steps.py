"""Steps of the digits-app pipeline: the scanner gives 0..255 pixels, the model was trained on 0..16."""

import numpy as np

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], dtype=object)


def to_digits_scale(inputs):
    """0..255 grey levels to the 0..16 scale of the training images."""
    pixels = np.asarray(inputs["input"], dtype=np.float64)
    return {"input": np.clip(np.rint(pixels * 16.0 / 255.0), 0, 16)}


def name_the_digit(outputs):
    """The label as a word, beside the label and the class probabilities."""
    labels = np.asarray(outputs["label"])
    return {"label": labels, "name": NAMES[labels], "probabilities": outputs["probabilities"]}
