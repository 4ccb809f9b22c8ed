"""Write an "own data" example from real files: readings CSV + sensor locations CSV.

Takes the Los-loop speeds (a real METR-LA week) and the METR-LA sensor coordinates and
writes them in the plain layout a user would bring:

* ``readings.csv``: a ``timestamp`` column, then one column per sensor id;
* ``sensors.csv``: ``sensor_id, latitude, longitude``.

Usage::

    python experiments/own_data/make_example.py --out own-data   # data root: --data-dir, $STGNN_DATA or ./datasets
    stgnn train --model stgcn --series own-data/readings.csv --locations own-data/sensors.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from stgnn.data import load_dataset
from stgnn.data.registry import resolve_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data root holding los-loop/ and metr-la/")
    parser.add_argument("--out", default="own-data", help="output folder")
    parser.add_argument("--sensors", type=int, default=60, help="keep the first N sensors")
    parser.add_argument("--days", type=int, default=7, help="keep the first N days")
    args = parser.parse_args()
    root = resolve_root(args.data_dir)
    ds = load_dataset("los-loop", root)
    steps = args.days * ds.steps_per_day
    ids = ds.node_ids[: args.sensors]
    readings = pd.DataFrame(ds.series[:steps, : args.sensors, 0].numpy(), columns=ids)
    readings.insert(0, "timestamp", ds.timestamps[:steps])
    locations_file = root / "metr-la" / "graph_sensor_locations.csv"
    if not locations_file.is_file():
        raise SystemExit(f"{locations_file}: not found (stgnn datasets download metr-la fetches it)")
    locations = pd.read_csv(locations_file, dtype={"sensor_id": str})
    locations = locations.set_index("sensor_id").loc[ids, ["latitude", "longitude"]].reset_index()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    readings.to_csv(out / "readings.csv", index=False)
    locations.to_csv(out / "sensors.csv", index=False)
    print(f"wrote {out / 'readings.csv'} ({len(readings)} x {len(ids)}) and {out / 'sensors.csv'}")


if __name__ == "__main__":
    main()
