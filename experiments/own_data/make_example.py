"""Write an "own data" example from real files: readings CSV + sensor locations CSV.

Takes the Los-loop speeds (a real METR-LA week) and the METR-LA sensor coordinates and
writes them in the plain layout a user would bring:

* ``readings.csv``: a ``timestamp`` column, then one column per sensor id;
* ``sensors.csv``: ``sensor_id, latitude, longitude``;
* ``calendar.csv`` (time covariates, global): ``timestamp, weekend, rush_hour``, flags derived
  from the timestamps (rush hour: weekdays 07:00-09:59 and 16:00-18:59);
* ``sensor_attributes.csv`` (node attributes): ``sensor_id, km_from_center, side``, the
  distance from the sensors' mean position and a text attribute (``east`` / ``west`` of it),
  derived from the coordinates.

Usage::

    python experiments/own_data/make_example.py --out own-data   # data root: --data-dir, $STGNN_DATA or ./datasets
    stgnn train --model stgcn --series own-data/readings.csv --locations own-data/sensors.csv
    stgnn train --model gwnet --series own-data/readings.csv --locations own-data/sensors.csv \
        --time-covariates own-data/calendar.csv --node-attributes own-data/sensor_attributes.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
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
    stamps = pd.DatetimeIndex(readings["timestamp"])
    weekday = stamps.day_of_week < 5
    rush = weekday & (((stamps.hour >= 7) & (stamps.hour < 10)) | ((stamps.hour >= 16) & (stamps.hour < 19)))
    pd.DataFrame({"timestamp": stamps, "weekend": (~weekday).astype(int), "rush_hour": rush.astype(int)}).to_csv(
        out / "calendar.csv", index=False)
    lat, lon = locations["latitude"].to_numpy(), locations["longitude"].to_numpy()
    km_north = (lat - lat.mean()) * 111.2
    km_east = (lon - lon.mean()) * 111.2 * np.cos(np.radians(lat.mean()))
    pd.DataFrame({"sensor_id": ids, "km_from_center": np.hypot(km_north, km_east).round(3),
                  "side": np.where(km_east >= 0, "east", "west")}).to_csv(out / "sensor_attributes.csv", index=False)
    print(f"wrote {out / 'readings.csv'} ({len(readings)} x {len(ids)}), {out / 'sensors.csv'}, "
          f"{out / 'calendar.csv'} and {out / 'sensor_attributes.csv'}")


if __name__ == "__main__":
    main()
