#!/usr/bin/python3
"""Compare p2pcat's G, D and VGG16[:16] with PyTorch on the same weights.

    parity.py DIR [--tol 1e-4] [-v]
    parity.py --gen G.safetensors HEATMAP.npy IMAGE.png

DIR holds what `build/tests/test_models --parity DIR` writes: for M in G, D,
VGG, the weights M.safetensors (p2pcat's names, lib/models.h, with the
architecture in the metadata) and M.io.safetensors (x, grad_out, and p2pcat's
y, grad.x, grad.NAME). This runs the same forward and backward in PyTorch
and prints, per tensor, max |p2pcat - torch| / max |torch|, where a bias's
gradient is measured against its layer's (the larger of the bias's and the
weight's gradient): a bias right before an InstanceNorm has a gradient that
is zero in exact arithmetic, and float32 noise on both sides in practice.
Exit 0 when every error is under --tol, 1 otherwise.

With --gen it checks p2p-gen instead: IMAGE.png, made by p2p-gen from
HEATMAP.npy (|u1) with G, against PyTorch's round((G(2 h - 1) + 1) * 127.5);
every pixel within one level (values at a rounding boundary may fall either
way), almost all equal. Needs PIL to read the PNG.

The PyTorch models are bench/torch_ref.py's, which names parameters as
lib/models.h does.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref as ref  # noqa: E402


def build(tag, meta):
    if tag == "G":
        return ref.UNet(int(meta["size"]), int(meta["ngf"]), int(meta["in_ch"]), int(meta["out_ch"]))
    if tag == "D":
        return ref.PatchGAN(int(meta["ndf"]), int(meta["d_in_ch"]))
    return ref.VGG16Features()


def compare(d, tag, tol):
    weights, meta = ref.st_load(f"{d}/{tag}.safetensors")
    io, _ = ref.st_load(f"{d}/{tag}.io.safetensors")
    model = build(tag, meta)
    names = set(model.state_dict())
    if names != set(weights):
        print(f"{tag}: names differ: {sorted(names ^ set(weights))}")
        return False
    ref.load_weights(model, f"{d}/{tag}.safetensors")
    x, gy = torch.from_numpy(io["x"].copy()), torch.from_numpy(io["grad_out"].copy())
    if tag == "VGG":    # frozen: the input gradient only, through the normalisation
        x.requires_grad_(True)
        y = model(ref.vgg_input(x))
        y.backward(gy)
        want = {"y": y.detach(), "grad.x": x.grad}
    else:
        want = ref.model_grads(model, x, gy)
    ok, worst = True, 0.0
    for name, w in want.items():
        got = torch.from_numpy(io[name])
        denom = float(w.abs().max())
        if name.startswith("grad.") and name.endswith(".bias"):
            denom = max(denom, float(want[name[:-4] + "weight"].abs().max()))
        err = float((got - w).abs().max()) / max(denom, 1e-30)
        worst = max(worst, err)
        bad = err >= tol
        ok &= not bad
        if bad or args.verbose:
            print(f"{tag} {name} {tuple(w.shape)}: error {err:.2e}{'  FAIL' if bad else ''}")
    print(f"{tag}: {len(want)} tensors, largest error {worst:.2e} ({'ok' if ok else 'FAIL'})")
    return ok


def check_gen(model, heat, png):
    from PIL import Image
    _, meta = ref.st_load(model)
    g = build("G", meta)
    ref.load_weights(g, model)
    with torch.no_grad():
        h = torch.from_numpy(np.load(heat).astype(np.float32) / 255)[None, None]
        y = g(h * 2 - 1)[0].permute(1, 2, 0)
    want = ((y + 1) * 127.5).round().clamp(0, 255).numpy().astype(np.int32)
    got = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
    if got.shape != want.shape:
        print(f"{png}: shape {got.shape}, PyTorch gives {want.shape}")
        return False
    diff = np.abs(got - want)
    ok = diff.max() <= 1 and (diff > 0).mean() < 0.01
    print(f"p2p-gen: {diff.size} values, {(diff > 0).sum()} off by one, "
          f"largest difference {diff.max()} ({'ok' if ok else 'FAIL'})")
    return ok


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--gen", nargs=3, metavar=("G", "HEATMAP", "PNG"))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.gen:
        ok = check_gen(*args.gen)
    elif args.dir:
        ok = all([compare(args.dir, tag, args.tol) for tag in ("G", "D", "VGG")])
    else:
        ap.error("DIR or --gen is needed")
    sys.exit(0 if ok else 1)
