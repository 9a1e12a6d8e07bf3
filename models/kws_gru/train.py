#!/usr/bin/env python3
"""Train the GRU keyword spotter: GRU(40->64) -> last step -> Linear(64->12).

    venv/bin/python models/kws_gru/train.py [--data DIR] [--kinglet PATH] [--epochs N] ...

Features come from `kinglet features` (the runtime's front-end). See README.md here and
models/common/kws.py for the recipe.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
import kws  # noqa: E402

if __name__ == "__main__":
    kws.main(cell="gru", default_hidden=64, default_out="models/kws_gru", demo_clips=True)
