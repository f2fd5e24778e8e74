"""spark-submit entry point of batch scoring: ``spark-submit jobs/predict.py MODEL_URI INPUT…``."""

from __future__ import annotations

import sys

from sparkhep.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
