"""spark-submit entry point of the train job: ``spark-submit jobs/train.py --config F``."""

from __future__ import annotations

import sys

from sparkhep.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
