"""Evidently's DataDriftPreset on two Parquet files; prints the drifted columns and the seconds
it took as JSON. Run by ``bench.history`` in Evidently's own virtualenv (it needs pandas < 3;
``make bench-history`` creates it from ``bench/evidently-requirements.txt``)."""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

P_VALUE_METHODS = ("p_value", "K-S", "chi-square", "Z-test")


def main(reference_path: str, current_path: str) -> None:
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    started = time.perf_counter()
    result = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - started
    drifted = []
    for metric in result.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        value, threshold = float(metric["value"]), float(config["threshold"])
        p_value = any(word in config["method"] for word in P_VALUE_METHODS)
        if (value < threshold) if p_value else (value > threshold):
            drifted.append(config["column"])
    print(json.dumps({"drifted": sorted(drifted), "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
