"""The London Underground network (stations, lines, connections, c. 2014), shipped with the package
in ``london_underground/`` (source and licence in its SOURCE.md), and the DNC paper's test graph
built from it: the zone-1 interchange stations (Graves et al. 2016, Fig. 2b).

The paper shows its map only as a figure, so we rebuild it by a rule: the nodes are the zone-1
stations served by at least two lines; each line's run between two such stations through
non-interchange zone-1 stations becomes one edge per direction. An edge is labelled by its line
and compass heading (the 4-point direction of travel), because edge labels must be unique per
source node for a traversal query to name one path (DNC Methods, "Random graph generation"):
label = 10 × line id + heading (N 0, E 1, S 2, W 3), e.g. 21 = "Central Line E".
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources

import torch
from torch import Tensor

from memrepro.errors import DataError

HEADINGS = ("N", "E", "S", "W")


@dataclass(frozen=True)
class Station:
    id: int
    name: str
    latitude: float
    longitude: float
    zone: float
    total_lines: int


@dataclass(frozen=True)
class Network:
    stations: dict[int, Station]
    lines: dict[int, str]
    connections: list[tuple[int, int, int]]  # undirected (station1, station2, line)


def _rows(name: str) -> list[dict[str, str]]:
    path = resources.files("memrepro.data") / "london_underground" / name
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: missing from the installed package; reinstall memrepro") from None


def load_network() -> Network:
    """The whole network as shipped: 302 stations, 13 lines, 406 line-labelled connections."""
    try:
        stations = {
            int(r["id"]): Station(int(r["id"]), r["name"], float(r["latitude"]), float(r["longitude"]), float(r["zone"]), int(r["total_lines"]))
            for r in _rows("london.stations.csv")
        }
        lines = {int(r["line"]): r["name"] for r in _rows("london.lines.csv")}
        connections = [(int(r["station1"]), int(r["station2"]), int(r["line"])) for r in _rows("london.connections.csv")]
    except (KeyError, ValueError) as err:
        raise DataError(f"london_underground/*.csv: malformed row ({err})") from None
    return Network(stations, lines, connections)


def heading(a: Station, b: Station) -> int:
    """Index in HEADINGS of the compass point closest to the direction of travel a -> b."""
    east = (b.longitude - a.longitude) * math.cos(math.radians(a.latitude))
    north = b.latitude - a.latitude
    return round(math.atan2(east, north) / (math.pi / 2)) % 4


def edge_label(line: int, head: int) -> int:
    return 10 * line + head


def describe_edge(label: int, network: Network) -> str:
    return f"{network.lines[label // 10]} {HEADINGS[label % 10]}"


def zone1_interchange_graph(network: Network | None = None) -> Tensor:
    """Triples [E, 3] (source station id, edge label, destination station id) of the zone-1
    interchange map, sorted. Station ids (1–303) and edge labels (< 140) fit the tasks' 0–999."""
    network = network or load_network()
    stations = network.stations
    zone1 = {i for i, s in stations.items() if s.zone == 1}
    interchanges = {i for i in zone1 if stations[i].total_lines >= 2}
    along = defaultdict(list)  # (station, line) -> neighbours on that line
    for a, b, line in network.connections:
        along[a, line].append(b)
        along[b, line].append(a)
    triples = set()
    for (start, line), neighbours in along.items():
        if start not in interchanges:
            continue
        for first in neighbours:
            previous, current = start, first
            # Non-interchange stations serve one line and so have at most two neighbours on it.
            while current in zone1 and current not in interchanges:
                onward = [s for s in along[current, line] if s != previous]
                if not onward:
                    break
                previous, current = current, onward[0]
            if current in interchanges and current != start:
                head = heading(stations[start], stations[first])
                triples.add((start, edge_label(line, head), current))
    return torch.tensor(sorted(triples), dtype=torch.long)
