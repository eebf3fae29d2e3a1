#!/usr/bin/env python3
"""The PyTorch (cuDNN) side of bench/gpu_ops, on the same GPU: the same
convolution table of G, D and VGG16[:16] forward and backward, the same
step estimate; then, when bench/torch_ref.py is beside it, the reference's
own training step and generation on the GPU (images/s and peak memory).

    gpu_ops_torch.py [--size 256] [--batch 24] [--iters 5] [--no-tf32] [--benchmark]
                     [--no-ref] [--device cuda|cpu]

PyTorch's defaults are kept (TF32 on for cuDNN convolutions, no cuDNN
autotuning) unless --no-tf32 / --benchmark say otherwise. Lines holding
"images_per_s" are JSON."""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as tf


DEV = torch.device("cuda")


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def peak_mib():
    if DEV.type != "cuda":
        return {}
    return {"peak_allocated_mib": torch.cuda.max_memory_allocated() / 2 ** 20,
            "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2 ** 20}


def reset_peak():
    if DEV.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def timed(fn, iters):
    fn()                                    # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t) / iters


def layers(size):
    """(name, transposed, cin, cout, h, k, stride, pad, need_dw) as gpu_ops has them."""
    out, levels = [], size.bit_length() - 1
    ch = [64 * min(2 ** i, 8) for i in range(levels)]
    for i in range(levels):
        out.append((f"G down.{i}", False, ch[i - 1] if i else 1, ch[i], size >> i, 4, 2, 1, True))
    for i in range(levels - 1, -1, -1):
        cin = ch[i] if i == levels - 1 else 2 * ch[i]
        out.append((f"G up.{i}", True, cin, ch[i - 1] if i else 3, size >> (i + 1), 4, 2, 1, True))
    h = size
    for i, (ci, co, s) in enumerate(zip([4, 64, 128, 256, 512], [64, 128, 256, 512, 1],
                                        [2, 2, 2, 1, 1])):
        out.append((f"D conv.{i}", False, ci, co, h, 4, s, 1, True))
        h = h // 2 if s == 2 else h - 1
    for idx, ci, co, h in zip([0, 2, 5, 7, 10, 12, 14], [3, 64, 64, 128, 128, 256, 256],
                              [64, 64, 128, 128, 256, 256, 256],
                              [size, size, size // 2, size // 2, size // 4, size // 4, size // 4]):
        out.append((f"VGG features.{idx}", False, ci, co, h, 3, 1, 1, False))
    return out


def bench_layers(args):
    dev = DEV
    tot = {}
    print(f"{'layer':18} {'channels':>11} {'size':>9} {'fwd ms':>9} {'bwd ms':>9}")
    for name, tr, ci, co, h, k, s, p, need_dw in layers(args.size):
        x = torch.randn(args.batch, ci, h, h, device=dev, requires_grad=True)
        shape = (ci, co, k, k) if tr else (co, ci, k, k)
        w = torch.randn(shape, device=dev, requires_grad=need_dw)
        b = torch.randn(co, device=dev, requires_grad=need_dw)
        conv = tf.conv_transpose2d if tr else tf.conv2d
        y = conv(x, w, b, stride=s, padding=p)
        dy = torch.randn_like(y)
        inputs = [x, w, b] if need_dw else [x]
        fwd = timed(lambda: conv(x, w, b, stride=s, padding=p), args.iters)
        y = conv(x, w, b, stride=s, padding=p)
        bwd = timed(lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True), args.iters)
        print(f"{name:18} {ci:5d}->{co:<5d} {h:4d}x{h:<4d} {fwd * 1e3:9.3f} {bwd * 1e3:9.3f}")
        net = name.split()[0]
        f, g = tot.get(net, (0, 0))
        tot[net] = (f + fwd, g + bwd)
        del x, w, b, y, dy
    for net, (f, g) in tot.items():
        print(f"{net + ' total':18} {'':22} {f * 1e3:9.3f} {g * 1e3:9.3f}")
    step = (tot["G"][0] + tot["G"][1] + 3 * (tot["D"][0] + tot["D"][1]) + 2 * tot["VGG"][0] +
            tot["VGG"][1])
    print(f"convolutions of one training step: {step * 1e3:.1f} ms -> at most "
          f"{args.batch / step:.1f} images/s")


def bench_reference(args):
    """bench/torch_ref.py's models, train_step and generation, moved to the GPU."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import torch_ref as ref
    except ImportError as e:
        print(f"# no torch_ref.py beside this script ({e}): reference skipped")
        return
    dev = DEV
    G, D = ref.init_models(args.size, 64, 64, 0)
    G, D = G.to(dev), D.to(dev)
    vgg = ref.make_vgg(None, 0).to(dev)
    A = torch.rand(args.batch, 1, args.size, args.size, device=dev) * 2 - 1
    B = torch.rand(args.batch, 3, args.size, args.size, device=dev) * 2 - 1
    opt_g, opt_d = ref.make_optimisers(G, D)
    G.dropout = True
    reset_peak()
    step = timed(lambda: ref.train_step(G, D, vgg, opt_g, opt_d, A, B), args.iters)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "what": "train",
                      "size": args.size, "batch": args.batch, "perc": True,
                      "tf32_conv": torch.backends.cudnn.allow_tf32,
                      "seconds_per_step": step, "images_per_s": args.batch / step,
                      **peak_mib()}))
    del opt_g, opt_d, vgg
    G.eval()
    reset_peak()

    def gen():
        with torch.no_grad():
            ((G(A) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    t = timed(gen, args.iters)
    print(json.dumps({"impl": "pytorch", "what": "gen", "size": args.size, "batch": args.batch,
                      "seconds_per_step": t, "images_per_s": args.batch / t, **peak_mib()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--benchmark", action="store_true", help="cuDNN autotuning on")
    ap.add_argument("--no-ref", action="store_true", help="only the layer table")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    args = ap.parse_args()
    global DEV
    DEV = torch.device(args.device)
    if DEV.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_ops_torch.py: torch sees no CUDA device")
    torch.backends.cudnn.allow_tf32 = not args.no_tf32
    torch.backends.cudnn.benchmark = args.benchmark
    print(f"# gpu_ops_torch: torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name() if DEV.type == 'cuda' else 'cpu'}, size {args.size}, batch {args.batch}, "
          f"TF32 {'off' if args.no_tf32 else 'on'}, cudnn.benchmark {args.benchmark}")
    bench_layers(args)
    if not args.no_ref:
        bench_reference(args)


if __name__ == "__main__":
    main()
