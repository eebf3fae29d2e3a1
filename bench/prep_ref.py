#!/usr/bin/env python3
"""The data preparation done the straightforward way, in Python with OpenCV
and NumPy: the yardstick for bench/prep.

    prep_ref.py CATFLW_ROOT WORKDIR [--size 256] [--sigma 2.0] [--seed 42]

The same three steps as catflw-crop, lm2heat and splitset, with their
defaults: the adaptive square crop (face box squared about its centre,
expanded by 0.1 of the side on each side, grown for 90% landmark coverage up
to twice its side, black padding), resized to SIZE and saved as JPEG q95; a
uint8 Gaussian heatmap of all the landmarks as .npy; an 80/10/10 split by a
seeded shuffle of the ids, hard-linked into WORKDIR/ds/{train,val,test}/{A,B}
with JSON Lines manifests. Prints one line per stage: NAME COUNT SECONDS.
"""
import argparse
import glob
import json
import math
import os
import random
import sys
import time

import cv2
import numpy as np


def square(pts, box, expand=0.1, coverage=0.9, max_grow=2.0):
    """The crop square (x0, y0, side) in source pixels."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = max(x2 - x1, y2 - y1, 1.0) * (1 + 2 * expand)
    n = len(pts)
    k = min(n, math.ceil(coverage * n - 1e-9))
    if k > 0:
        d = np.sort(np.maximum(np.abs(pts[:, 0] - cx), np.abs(pts[:, 1] - cy)))
        s = max(s, min(2 * d[k - 1], max_grow * s))
    x0, y0 = math.floor(cx - s / 2), math.floor(cy - s / 2)
    side = max(math.ceil(cx + s / 2) - x0, math.ceil(cy + s / 2) - y0, 1)
    return x0, y0, side


def crop_all(root, out, size):
    os.makedirs(out, exist_ok=True)
    records = []
    for label in sorted(glob.glob(os.path.join(root, "labels", "*.json"))):
        name = os.path.splitext(os.path.basename(label))[0]
        with open(label) as f:
            lab = json.load(f)
        pts = np.array(lab["labels"], dtype=np.float64)
        box = np.array(lab["bounding_boxes"], dtype=np.float64).reshape(-1)[:4]
        img = cv2.imread(os.path.join(root, "images", name + ".png"), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        x0, y0, side = square(pts, box)
        # pad with black where the square leaves the photo, then cut it out
        top, left = max(0, -y0), max(0, -x0)
        bottom, right = max(0, y0 + side - h), max(0, x0 + side - w)
        if top or left or bottom or right:
            img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
        sq = img[y0 + top:y0 + top + side, x0 + left:x0 + left + side]
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        sq = cv2.resize(sq, (size, size), interpolation=interp)
        path = os.path.join(out, name + ".jpg")
        cv2.imwrite(path, sq, [cv2.IMWRITE_JPEG_QUALITY, 95])
        k = size / side
        moved = [[(x - x0) * k, (y - y0) * k] for x, y in pts]
        records.append({"id": name, "image": path, "points": moved,
                        "box": box.tolist(), "crop": [x0, y0, side]})
    return records


def heat_all(records, out, size, sigma):
    os.makedirs(out, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for r in records:
        p = np.array(r["points"], dtype=np.float32)
        d2 = (xx[None] - p[:, 0, None, None]) ** 2 + (yy[None] - p[:, 1, None, None]) ** 2
        m = np.exp(-d2 / (2 * sigma * sigma)).max(axis=0)
        path = os.path.join(out, r["id"] + ".npy")
        np.save(path, np.round(255 * m).astype(np.uint8))
        r["heatmap"] = path
    return records


def split_all(records, root, seed):
    recs = sorted(records, key=lambda r: r["id"])
    random.Random(seed).shuffle(recs)
    n = len(recs)
    ntrain, nval = n * 80 // 100, n * 10 // 100
    parts = {"train": recs[:ntrain], "val": recs[ntrain:ntrain + nval],
             "test": recs[ntrain + nval:]}
    for name, part in parts.items():
        for sub in ("A", "B"):
            os.makedirs(os.path.join(root, name, sub), exist_ok=True)
        with open(os.path.join(root, name + ".jsonl"), "w") as f:
            for r in sorted(part, key=lambda r: r["id"]):
                a = os.path.join(root, name, "A", r["id"] + ".npy")
                b = os.path.join(root, name, "B", r["id"] + ".jpg")
                os.link(r["heatmap"], a)
                os.link(r["image"], b)
                f.write(json.dumps(dict(r, image=b, heatmap=a, split=name)) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("work")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    t = time.perf_counter()
    recs = crop_all(a.root, os.path.join(a.work, "crops"), a.size)
    print("crop", len(recs), "%.3f" % (time.perf_counter() - t), flush=True)
    t = time.perf_counter()
    heat_all(recs, os.path.join(a.work, "heat"), a.size, a.sigma)
    print("heat", len(recs), "%.3f" % (time.perf_counter() - t), flush=True)
    t = time.perf_counter()
    split_all(recs, os.path.join(a.work, "ds"), a.seed)
    print("split", len(recs), "%.3f" % (time.perf_counter() - t), flush=True)


if __name__ == "__main__":
    sys.exit(main())
