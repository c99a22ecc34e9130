"""Build ``world.json``, the world map the HTML report draws, from Natural Earth 1:110m countries.

Run once by a maintainer, never at run time; the output is committed and shipped as package data:

    python src/phonehome/report/assets/make_world.py naturalearth_lowres.shp naturalearth_lowres.dbf \
        /usr/share/iso-codes/json/iso_3166-1.json > src/phonehome/report/assets/world.json

Sources: the Natural Earth 1:110m Admin 0 countries (public domain, https://www.naturalearthdata.com),
as shipped in ``geopandas`` 0.14.4 (``geopandas/datasets/naturalearth_lowres``), which keeps ISO 3166
alpha-3 codes only; Debian's ``iso-codes`` table maps them to the alpha-2 codes the geolocation gives
(only codes are taken from it). The output holds, per alpha-2 code, one SVG path in the Equal Earth
projection (Šavrič, Patterson, Jenny 2018), simplified (Douglas-Peucker) and rounded to whole units,
a label point (the centroid of its largest ring), and marker points for countries too small to draw.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import sys
from pathlib import Path

WIDTH = 1000  # map units across; one unit is about 40 km at the equator
TOLERANCE = 0.4  # Douglas-Peucker tolerance in map units
# Equal Earth constants, Šavrič et al. 2018, eq. 2.
A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
M = math.sqrt(3) / 2
X_MAX = 2 * math.sqrt(3) * math.pi / (3 * (A1 + 3 * A2 + 7 * A3 + 9 * A4))  # x at λ=π, φ=0
SCALE = WIDTH / (2 * X_MAX)

# Countries and territories that hold servers or matter to the report but are smaller than the
# 110m scale draws: (longitude, latitude) of a marker.
POINTS: dict[str, tuple[float, float]] = {
    "SG": (103.82, 1.35),
    "HK": (114.17, 22.32),
    "MO": (113.55, 22.19),
    "BH": (50.56, 26.07),
    "MT": (14.45, 35.90),
    "MC": (7.42, 43.74),
    "LI": (9.55, 47.16),
    "AD": (1.52, 42.51),
    "SM": (12.46, 43.94),
    "VA": (12.45, 41.90),
    "GI": (-5.35, 36.14),
    "JE": (-2.13, 49.21),
    "GG": (-2.58, 49.45),
    "IM": (-4.55, 54.23),
    "MU": (57.55, -20.30),
    "MV": (73.51, 4.18),
    "SC": (55.45, -4.62),
    "KM": (43.33, -11.70),
    "CV": (-23.60, 15.10),
    "ST": (6.61, 0.19),
    "BB": (-59.55, 13.19),
    "BM": (-64.75, 32.31),
    "KY": (-81.25, 19.31),
    "AG": (-61.80, 17.07),
    "KN": (-62.75, 17.30),
    "LC": (-60.98, 13.91),
    "VC": (-61.20, 13.25),
    "GD": (-61.68, 12.12),
    "DM": (-61.37, 15.41),
    "AW": (-69.97, 12.52),
    "CW": (-68.99, 12.17),
    "GU": (144.79, 13.44),
    "MP": (145.75, 15.18),
    "PW": (134.58, 7.51),
    "FM": (158.22, 6.92),
    "MH": (171.18, 7.13),
    "NR": (166.93, -0.52),
    "KI": (173.00, 1.42),
    "TV": (179.20, -8.52),
    "WS": (-172.10, -13.76),
    "TO": (-175.20, -21.18),
    "PF": (-149.43, -17.65),
}


def project(lon: float, lat: float) -> tuple[float, float]:
    """Equal Earth, scaled so the map is WIDTH units wide; y grows downwards as in SVG."""
    lam, phi = math.radians(lon), math.radians(lat)
    theta = math.asin(M * math.sin(phi))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = 2 * math.sqrt(3) * lam * math.cos(theta) / (3 * (9 * A4 * t6 * t2 + 7 * A3 * t6 + 3 * A2 * t2 + A1))
    y = theta * (A1 + A2 * t2 + t6 * (A3 + A4 * t2))
    return x * SCALE + WIDTH / 2, -y * SCALE


def read_shapes(data: bytes) -> list[list[list[tuple[float, float]]]]:
    """Polygon records of an ESRI shapefile (ESRI Shapefile Technical Description, 1998)."""
    shapes: list[list[list[tuple[float, float]]]] = []
    pos = 100  # the main file header is 100 bytes
    while pos + 8 <= len(data):
        _, words = struct.unpack(">ii", data[pos : pos + 8])
        content = data[pos + 8 : pos + 8 + 2 * words]
        pos += 8 + 2 * words
        (kind,) = struct.unpack("<i", content[:4])
        if kind != 5:  # 5 = Polygon; a null shape carries no geometry
            shapes.append([])
            continue
        parts_n, points_n = struct.unpack("<ii", content[36:44])
        starts = list(struct.unpack(f"<{parts_n}i", content[44 : 44 + 4 * parts_n]))
        base = 44 + 4 * parts_n
        xy = struct.unpack(f"<{2 * points_n}d", content[base : base + 16 * points_n])
        points = list(zip(xy[0::2], xy[1::2], strict=True))
        bounds = [*starts, points_n]
        shapes.append([points[a:b] for a, b in itertools.pairwise(bounds)])
    return shapes


def read_dbf(data: bytes) -> list[dict[str, str]]:
    """Records of a dBase III table: field descriptors from byte 32 to the 0x0D terminator."""
    count, header_len, record_len = struct.unpack("<IHH", data[4:12])
    fields: list[tuple[str, int]] = []
    pos = 32
    while data[pos] != 0x0D:
        fields.append((data[pos : pos + 11].split(b"\0")[0].decode("ascii"), data[pos + 16]))
        pos += 32
    rows = []
    for i in range(count):
        rec = data[header_len + i * record_len : header_len + (i + 1) * record_len]
        off, row = 1, {}  # byte 0 is the deletion flag
        for name, size in fields:
            row[name] = rec[off : off + size].decode("utf-8", "replace").strip()
            off += size
        rows.append(row)
    return rows


def simplify(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """Douglas-Peucker, iterative."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        (ax, ay), (bx, by) = points[a], points[b]
        dx, dy = bx - ax, by - ay
        norm = math.hypot(dx, dy) or 1.0
        best, far = -1.0, -1
        for i in range(a + 1, b):
            px, py = points[i]
            dist = abs(dy * (px - ax) - dx * (py - ay)) / norm if (dx or dy) else math.hypot(px - ax, py - ay)
            if dist > best:
                best, far = dist, i
        if far > 0 and best > tolerance:
            keep[far] = True
            stack += [(a, far), (far, b)]
    return [p for p, k in zip(points, keep, strict=True) if k]


def ring_path(ring: list[tuple[float, float]]) -> str:
    """One closed ring as an SVG path fragment in whole units with relative moves, or "" if it vanishes."""
    pts = simplify([project(lon, lat) for lon, lat in ring], TOLERANCE)
    rounded: list[tuple[int, int]] = []
    for x, y in pts:
        p = (round(x), round(y))
        if not rounded or rounded[-1] != p:
            rounded.append(p)
    if len(rounded) > 1 and rounded[0] == rounded[-1]:
        rounded.pop()
    if len(rounded) < 3:
        return ""
    out = [f"M{rounded[0][0]} {rounded[0][1]}"]
    for (x0, y0), (x1, y1) in itertools.pairwise(rounded):
        out.append(f"{x1 - x0} {y1 - y0}")
    return out[0] + "l" + " ".join(out[1:]) + "z"


def centroid(ring: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Area-weighted centroid and area of a projected ring (shoelace formula)."""
    pts = [project(lon, lat) for lon, lat in ring]
    area = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        cross = x0 * y1 - x1 * y0
        area += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if not area:
        return pts[0][0], pts[0][1], 0.0
    return cx / (3 * area), cy / (3 * area), abs(area) / 2


def build(shp: bytes, dbf: bytes, iso: dict[str, list[dict[str, str]]]) -> dict[str, object]:
    alpha2 = {c["alpha_3"]: c["alpha_2"] for c in iso["3166-1"]}
    paths: dict[str, str] = {}
    labels: dict[str, list[int]] = {}
    top, bottom = math.inf, -math.inf
    for shape, row in zip(read_shapes(shp), read_dbf(dbf), strict=True):
        code = alpha2.get(row["iso_a3"])
        if code is None or code == "AQ":  # Antarctica holds no servers and a fifth of the height
            continue
        rings = [ring_path(r) for r in shape]
        if not any(rings):  # keep a country at least as its largest ring, unsimplified
            rings = [ring_path(max(shape, key=len))]
        paths[code] = paths.get(code, "") + "".join(rings)
        x, y, _ = max((centroid(r) for r in shape), key=lambda c: c[2])
        labels[code] = [round(x), round(y)]
        for ring in shape:
            for lon, lat in ring:
                y = project(lon, lat)[1]
                top, bottom = min(top, y), max(bottom, y)
    points = {
        code: [round(x), round(y)]
        for code, (x, y) in ((c, project(lon, lat)) for c, (lon, lat) in POINTS.items())
        if code not in paths
    }
    return {
        "source": "Natural Earth 1:110m Admin 0 countries (public domain), Equal Earth projection",
        "viewBox": [0, math.floor(top) - 2, WIDTH, math.ceil(bottom - top) + 4],
        "paths": dict(sorted(paths.items())),
        "labels": dict(sorted(labels.items())),
        "points": dict(sorted(points.items())),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.stderr.write(__doc__ or "")
        return 2
    shp, dbf, iso = (Path(a).read_bytes() for a in argv[1:])
    sys.stdout.write(json.dumps(build(shp, dbf, json.loads(iso)), separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
