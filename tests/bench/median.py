#!/usr/bin/env python3
"""The median of each figure over several benchmark runs.

usage: tests/bench/median.py RUN1.txt RUN2.txt RUN3.txt

Each file is one run's output of `piauth-bench` or `client/pi/bench`: the
JSON lines ({"figure", "value", "unit", ...}) are read, everything else is
skipped. Prints one line per figure: its median, its unit, and every run's
value, in the order of the first run. A figure missing from a run is an
error: the runs must be of the same benchmark.
"""

import json
import statistics
import sys


def figures(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            fig = json.loads(line)
            out[fig["figure"]] = (fig["value"], fig["unit"])
    return out


def main(paths):
    if len(paths) < 2:
        sys.exit(__doc__)
    runs = [figures(p) for p in paths]
    for name, (_, unit) in runs[0].items():
        missing = [p for p, r in zip(paths, runs) if name not in r]
        if missing:
            sys.exit(f"{name} is missing from {', '.join(missing)}")
        values = [r[name][0] for r in runs]
        shown = " ".join(f"{v:.4g}" for v in values)
        print(f"{name:<56} {statistics.median(values):>14.4g} {unit:<9} runs: {shown}")


if __name__ == "__main__":
    main(sys.argv[1:])
