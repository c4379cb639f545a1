"""Recorded compare runs: the slices of a real run (every transaction's latency)
and where its paths ran, read back into the records ``compare.assemble`` takes.

One file per run: ``NAME.npz`` with ``latency_ns_<k>`` (slice k's latencies,
int64 ns) and ``meta`` (JSON: the paths, where they ran, each slice's counts,
how each path is built, the run's settings).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from vnetdiag.compare import Where
from vnetdiag.model.compare import CompareResult, HopBuild, PathBuild, PathSpec, Slice

HERE = Path(__file__).resolve().parent


def save(result: CompareResult, name: str) -> Path:
    arrays = {f"latency_ns_{k}": np.rint(s.latency_us * 1000).astype(np.int64) for k, s in enumerate(result.slices)}
    meta = {
        "settings": {"pattern": result.pattern, "streams": result.streams, "slice_s": result.slice_s,
                     "warmup_s": result.warmup_s, "rounds": result.rounds},
        "paths": [{"label": f.label, "source": f.source, "target": f.target} for f in result.paths],
        "where": [{"source_netns": f.source_netns, "target_netns": f.target_netns, "client_address": f.client_address,
                   "server_address": f.server_address} for f in result.paths],
        "builds": [None if f.build is None else dataclasses.asdict(f.build) for f in result.paths],
        "slices": [{k: v for k, v in dataclasses.asdict(s).items() if k != "latency_us"} for s in result.slices],
    }
    path = HERE / f"{name}.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def load(name: str) -> dict:
    """{paths, where, builds, slices, settings} of a recorded run, as records."""
    with np.load(HERE / f"{name}.npz") as z:
        meta = json.loads(str(z["meta"]))
        latencies = [z[f"latency_ns_{k}"] / 1000 for k in range(len(meta["slices"]))]
    builds = [None if b is None else PathBuild(hops=tuple(HopBuild(**{**h, "offloads": tuple(h["offloads"])})
                                                           for h in b["hops"]),
                                               complete=b["complete"], notes=tuple(b["notes"]))
              for b in meta["builds"]]
    return {"settings": meta["settings"], "paths": [PathSpec(**p) for p in meta["paths"]],
            "where": [Where(**w) for w in meta["where"]], "builds": builds,
            "slices": [Slice(**s, latency_us=lat) for s, lat in zip(meta["slices"], latencies)]}
