"""spark-submit entry point of the convert job: ``spark-submit jobs/convert.py --config F``."""

from __future__ import annotations

import sys

from sparkhep.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
