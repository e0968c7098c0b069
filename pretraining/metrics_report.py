"""Turn a run's metrics.csv into metrics.json and a PNG of MLM loss and masked-token accuracy
over steps. The PNG is drawn with numpy and zlib alone (matplotlib is not a dependency): two
panels, loss (blue) and accuracy (red), with the step and value ranges in tick labels.

    python pretraining/metrics_report.py runs/zh-tiny/metrics.csv --json m.json --png m.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import struct
import sys
import zlib

import numpy as np

# 3x5 bitmap glyphs for tick labels (rows top to bottom, 3 bits each)
GLYPHS = {"0": "7,5,5,5,7", "1": "2,6,2,2,7", "2": "7,1,7,4,7", "3": "7,1,7,1,7", "4": "5,5,7,1,1",
          "5": "7,4,7,1,7", "6": "7,4,7,5,7", "7": "7,1,1,1,1", "8": "7,5,7,5,7", "9": "7,5,7,1,7",
          ".": "0,0,0,0,2"}


def read_metrics(path: str) -> list[dict]:
    """Rows of metrics.csv as dicts of numbers."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def write_png(path: str, image: np.ndarray) -> None:
    """An RGB uint8 array as a PNG file, written atomically."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path + ".tmp", "wb") as f:
        f.write(png)
    os.replace(path + ".tmp", path)


def draw_text(image: np.ndarray, x: int, y: int, text: str, scale: int = 2) -> None:
    for i, char in enumerate(text):
        for row, bits in enumerate(GLYPHS[char].split(",")):
            for col in range(3):
                if int(bits) >> (2 - col) & 1:
                    y0, x0 = y + row * scale, x + (i * 4 + col) * scale
                    image[y0:y0 + scale, x0:x0 + scale] = 0


def draw_panel(image: np.ndarray, box: tuple[int, int, int, int], xs, ys, color) -> None:
    """A line plot of (xs, ys) inside box = (left, top, width, height), with min/max tick labels."""
    left, top, width, height = box
    image[top:top + height, left] = image[top + height - 1, left:left + width] = 0
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    px = left + (np.asarray(xs) - x0) / max(x1 - x0, 1e-9) * (width - 1)
    py = top + height - 1 - (np.asarray(ys) - y0) / max(y1 - y0, 1e-9) * (height - 1)
    for (ax, ay), (bx, by) in zip(zip(px, py), zip(px[1:], py[1:])):
        n = int(max(abs(bx - ax), abs(by - ay))) + 1
        for t in np.linspace(0, 1, n):
            x, y = int(round(ax + t * (bx - ax))), int(round(ay + t * (by - ay)))
            image[y - 1:y + 2, x - 1:x + 2] = color
    draw_text(image, left - 52, top, f"{y1:.3f}")
    draw_text(image, left - 52, top + height - 10, f"{y0:.3f}")
    draw_text(image, left, top + height + 6, str(x0))
    draw_text(image, left + width - 8 * len(str(x1)), top + height + 6, str(x1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", help="metrics.csv written by pretraining.py")
    parser.add_argument("--json", required=True, help="output JSON: the rows of metrics.csv")
    parser.add_argument("--png", required=True, help="output PNG: loss and accuracy over steps")
    args = parser.parse_args(argv)
    if not os.path.exists(args.metrics):
        print(f"error: {args.metrics!r} not found; it is written by pretraining.py in its --output", file=sys.stderr)
        return 2
    rows = read_metrics(args.metrics)
    if len(rows) < 2:
        print(f"error: {args.metrics!r} has {len(rows)} rows; a curve needs at least 2", file=sys.stderr)
        return 2
    with open(args.json + ".tmp", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    os.replace(args.json + ".tmp", args.json)
    image = np.full((300, 900, 3), 255, dtype=np.uint8)
    steps = [r["step"] for r in rows]
    draw_panel(image, (70, 20, 340, 250), steps, [r["loss"] for r in rows], (30, 80, 200))
    draw_panel(image, (530, 20, 340, 250), steps, [r["accuracy"] for r in rows], (200, 40, 40))
    write_png(args.png, image)
    print(f"wrote {len(rows)} rows to {args.json} and the curves to {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
