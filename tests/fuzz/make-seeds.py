#!/usr/bin/env python3
"""Write the fuzz seed corpora in tests/fuzz/NAME/: a few small valid files
of each format and a few near misses, so the fuzzer starts from the shapes
the readers expect. Run from anywhere; the output is deterministic."""
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(name, fname, data):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


def points(n, x0=10.0, y0=20.0):
    return [[round(x0 + 1.5 * i, 3), round(y0 + 0.75 * i, 3)] for i in range(n)]


# ---- JSON Lines sample streams ----
rec = {"id": "cat1", "image": "crops/cat1.jpg", "points": points(3), "box": [0, 0, 64, 48]}
put("jsonl", "one", json.dumps(rec) + "\n")
put("jsonl", "stream",
    "".join(json.dumps(dict(rec, id="c%d" % i, split=s, heatmap="heat/c%d.npy" % i)) + "\n"
            for i, s in enumerate(["train", "val", "test"])))
put("jsonl", "blank-and-crlf", "\n  \n" + json.dumps(rec) + "\r\n\t\n{\"id\":\"x\"}")
put("jsonl", "bad-lines", "{\"id\": \"a\",}\n[1, 2]\n\"text\"\n{\"id\": \"ok\", \"points\": [[1, 2], [3]]}\n")
put("jsonl", "nested", json.dumps({"id": "n", "crop": {"src": "x.png", "rect": [1, 2, 3, 4]},
                                    "points": [[1e300, -1e-300]], "u": "\u00e9\u4e2d"}) + "\n")

# ---- CatFLW label files ----
lab = {"labels": points(48), "bounding_boxes": [5.0, 10.0, 90.0, 70.0]}
put("catflw", "good.json", json.dumps(lab))
put("catflw", "compact.json", json.dumps(lab, separators=(",", ":")))
put("catflw", "p47.json", json.dumps(dict(lab, labels=points(47))))
put("catflw", "inverted.json", json.dumps(dict(lab, bounding_boxes=[90, 70, 5, 10])))
put("catflw", "nan.json", json.dumps(lab).replace("10.0", "NaN", 1))
put("catflw", "dup.json", '{"labels": [], ' + json.dumps(lab)[1:])

# ---- CAT label files ----
put("cat", "good.cat", "9 " + " ".join("%d %d" % (10 + 3 * i, 20 + 2 * i) for i in range(9)) + " \n")
put("cat", "float.cat", "9\n" + "\n".join("%.2f %.2f" % (1.25 * i, 2.5 * i) for i in range(9)) + "\n")
put("cat", "short.cat", "9 1 2 3 4 5 6")
put("cat", "count8.cat", "8 " + " ".join(str(i) for i in range(16)))
put("cat", "nan.cat", "9 nan 2 " + " ".join(str(i) for i in range(16)))


# ---- .npy arrays ----
def npy(descr, shape, payload, version=1):
    dims = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pre = 10 if version == 1 else 12
    h += " " * ((64 - (pre + len(h) + 1) % 64) % 64) + "\n"
    hl = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + hl + h.encode() + payload


put("npy", "u8-4x3.npy", npy("|u1", (4, 3), bytes(range(0, 240, 20))))
put("npy", "f4-2x2.npy", npy("<f4", (2, 2), struct.pack("<4f", 0.0, 0.25, 0.5, 1.0)))
put("npy", "f4-nan.npy", npy("<f4", (1, 2), struct.pack("<2f", float("nan"), 1.0)))
put("npy", "u8-1d.npy", npy("|u1", (5,), b"\x00\x01\x02\x03\x04"))
put("npy", "u8-scalar.npy", npy("|u1", (), b"\x07"))
put("npy", "u8-4d.npy", npy("|u1", (1, 1, 2, 2), b"\x01\x02\x03\x04"))
put("npy", "v2.npy", npy("|u1", (2, 2), b"\x01\x02\x03\x04", version=2))
put("npy", "truncated.npy", npy("|u1", (4, 4), b"\x01\x02\x03"))


# ---- safetensors files ----
def st(tensors, meta=None):
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        hdr[name] = {"dtype": "F32", "shape": list(shape),
                     "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


unet = {"arch": "unet", "size": "32", "in_ch": "1", "out_ch": "3", "ngf": "4",
        "dropout": "0.5", "norm": "instance"}
put("safetensors", "two.safetensors", st([("a", (2, 2), [1, 2, 3, 4]), ("b", (3,), [5, 6, 7])]))
put("safetensors", "empty-tensor.safetensors", st([("z", (0, 4), []), ("s", (), [1.5])]))
put("safetensors", "unet-meta.safetensors",
    st([("down.0.weight", (1, 1, 1, 1), [0.5])], dict(unet, epoch="3", val_l1="0.25")))
put("safetensors", "patchgan-meta.safetensors",
    st([("conv.0.weight", (1,), [0.5])], {"d_arch": "patchgan", "d_size": "32", "d_in_ch": "4", "ndf": "4", "d_norm": "instance"}))
ckpt = dict(unet, format="p2pcat-train", epoch="1", batch="2", step="7", n_train="9",
            best_val_l1="0.5", best_epoch="1", sums="1,2,3,4,5", seed="42",
            config='{"epochs": 2}')
ckpt["G.adam.step"] = "7"
ckpt["D.adam.step"] = "7"
ckpt.update({"d_arch": "patchgan", "d_size": "32", "d_in_ch": "4", "ndf": "4", "d_norm": "instance"})
put("safetensors", "checkpoint.safetensors", st([("G.down.0.weight", (1,), [1.0])], ckpt))
put("safetensors", "gap.safetensors",
    st([("a", (1,), [1.0])])[:-4] + b"\x00\x00\x80\x3f\x00\x00\x00\x00")


# ---- images for the crop path: 8-bit RGB PNGs (decoded by lib/crop.c) and
# others (libvips) ----
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(w, h, colour=2, depth=8, interlace=0, filters=(0, 1, 2, 3, 4), split=1, extra=b""):
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    rows = []
    for y in range(h):
        f = filters[y % len(filters)]
        rows.append(bytes([f]) + bytes((x * 37 + y * 11 + c * 71) & 255
                                       for x in range(w) for c in range(ch)))
    z = zlib.compress(b"".join(rows), 6)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    k = (len(z) + split - 1) // split
    idats = b"".join(chunk(b"IDAT", z[i:i + k]) for i in range(0, len(z), k))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + idats + chunk(b"IEND", b"")


put("png", "rgb8-filters.png", png(9, 7))
put("png", "rgb8-split-idat.png", png(12, 5, split=3, extra=chunk(b"tEXt", b"k\x00v")))
put("png", "rgb8-1x1.png", png(1, 1, filters=(4,)))
put("png", "grey8.png", png(8, 6, colour=0))
put("png", "rgba8.png", png(8, 6, colour=6))
put("png", "rgb8-bad-filter.png", png(6, 4, filters=(0, 5)))
put("png", "rgb8-truncated.png", png(10, 8)[:-30])
bad = bytearray(png(7, 7))
bad[-20] ^= 0xff
put("png", "rgb8-bad-crc.png", bytes(bad))
