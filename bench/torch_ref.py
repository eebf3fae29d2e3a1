#!/usr/bin/python3
"""PyTorch reference of p2pcat's models, losses and optimiser (DESIGN.md, "The
model"), for the comparison tests and for bench/train. Runs on Debian's
python3-torch (1.13; it lives in the system Python, hence /usr/bin/python3),
needs numpy, and torchvision for nothing.

    torch_ref.py names   [--ngf 64] [--ndf 64] [--size 256]
    torch_ref.py init    --seed N --ngf F --ndf F --size S -o OUT.safetensors
    torch_ref.py grads   --model G|D --weights W.safetensors --input IN.safetensors -o OUT.safetensors
    torch_ref.py step    --weights W.safetensors --input IN.safetensors -o OUT.safetensors [--vgg16 V] ...
    torch_ref.py bench   --what train|gen --size S --batch N --threads T [--steps N] [--perc/--no-perc]
                         [--device cpu|cuda] [--no-tf32] [--no-cudnn-benchmark] ...
    torch_ref.py selftest

Checkpoint naming contract
--------------------------
Each model's parameters are named exactly as its PyTorch state_dict names them;
p2pcat's safetensors checkpoints use the same names (float32, the shapes below).
Every convolution has a bias (InstanceNorm without affine, as PyTorch's
pix2pix does: the bias is kept although the norm cancels it where there is
one). Conv2d weights are (out, in, 4, 4); ConvTranspose2d weights are
(in, out, 4, 4), PyTorch's layout.

G, the U-Net (1 -> 3 channels, S = 2^k, k levels; ch(i) = ngf * min(2^i, 8)):
    down.i   Conv2d 4x4 s2 p1, in 1 (i = 0) or ch(i-1), out ch(i);
             i = 0 the outermost (S -> S/2) .. k-1 the innermost (2 -> 1)
    up.j     ConvTranspose2d 4x4 s2 p1, numbered in the order they run:
             j = 0 the innermost (1 -> 2) .. k-1 the outermost (S/2 -> S);
             up.j works at level i = k-1-j: in ch(k-1) (j = 0) or 2 ch(i),
             out ch(i-1) (j < k-1) or 3 (j = k-1)
  forward, with d_i the output of level i on the way down:
    d_0 = down.0(x)
    d_i = IN(down.i(LReLU(d_{i-1})))      0 < i < k-1   (LReLU slope 0.2)
    d_{k-1} = down.{k-1}(LReLU(d_{k-2}))   the innermost: no norm (1x1 at any S)
    u = d_{k-1}
    for j = 0 .. k-2 (level i = k-1-j):
        u = cat([d_{i-1}, Drop(IN(up.j(ReLU(u))))], channels)   skip first, then up
            Drop: dropout 0.5 at j = 0, 1, 2 only (the first three up blocks,
            right after the 1x1 bottleneck), and only when sampling/training
    y = tanh(up.{k-1}(ReLU(u)))
  IN = InstanceNorm2d(eps 1e-5, no affine, no running statistics), so training
  and inference normalise alike; only dropout differs.

  G, ngf 64 at 256 (k = 8), 54,407,555 parameters:
    down.0.weight (64, 1, 4, 4)       down.0.bias (64,)
    down.1.weight (128, 64, 4, 4)     down.1.bias (128,)
    down.2.weight (256, 128, 4, 4)    down.2.bias (256,)
    down.3.weight (512, 256, 4, 4)    down.3.bias (512,)
    down.4.weight (512, 512, 4, 4)    down.4.bias (512,)
    down.5.weight (512, 512, 4, 4)    down.5.bias (512,)
    down.6.weight (512, 512, 4, 4)    down.6.bias (512,)
    down.7.weight (512, 512, 4, 4)    down.7.bias (512,)
    up.0.weight (512, 512, 4, 4)      up.0.bias (512,)
    up.1.weight (1024, 512, 4, 4)     up.1.bias (512,)
    up.2.weight (1024, 512, 4, 4)     up.2.bias (512,)
    up.3.weight (1024, 512, 4, 4)     up.3.bias (512,)
    up.4.weight (1024, 256, 4, 4)     up.4.bias (256,)
    up.5.weight (512, 128, 4, 4)      up.5.bias (128,)
    up.6.weight (256, 64, 4, 4)       up.6.bias (64,)
    up.7.weight (128, 3, 4, 4)        up.7.bias (3,)

D, the PatchGAN (input cat([heatmap, rgb]), 4 channels):
    conv.0  Conv2d 4 -> ndf, s2 p1, LReLU
    conv.1  Conv2d ndf -> 2 ndf, s2 p1, IN, LReLU
    conv.2  Conv2d 2 ndf -> 4 ndf, s2 p1, IN, LReLU
    conv.3  Conv2d 4 ndf -> 8 ndf, s1 p1, IN, LReLU
    conv.4  Conv2d 8 ndf -> 1, s1 p1, no activation: (N, 1, S/8 - 2, S/8 - 2)
  D, ndf 64 (any size), 2,765,761 parameters:
    conv.0.weight (64, 4, 4, 4)       conv.0.bias (64,)
    conv.1.weight (128, 64, 4, 4)     conv.1.bias (128,)
    conv.2.weight (256, 128, 4, 4)    conv.2.bias (256,)
    conv.3.weight (512, 256, 4, 4)    conv.3.bias (512,)
    conv.4.weight (1, 512, 4, 4)      conv.4.bias (1,)

VGG16 features[:16] (to relu3_3), torchvision's names: features.N.weight and
features.N.bias for N in 0 2 5 7 10 12 14 (3 -> 64 64 | pool | 128 128 | pool
| 256 256 256), frozen.

Losses, on images in [-1, 1] (8-bit v -> v / 127.5 - 1), A the heatmap, B the
photo, F = G(A) computed once per batch:
    loss_d      = 0.5 * (MSE(D(A, B), 1) + MSE(D(A, F.detach()), 0))
    loss_g_gan  = MSE(D(A, F), 1)                  (D after its own step)
    loss_g_l1   = mean |F - B|
    loss_g_perc = MSE(vgg((F + 1) / 2 normalised), vgg((B + 1) / 2 normalised))
                  ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
    loss_g      = loss_g_gan + lambda_l1 * loss_g_l1 + lambda_perc * loss_g_perc
MSE and L1 are means over every element. Adam (eps 1e-8, no weight decay):
G lr 2e-4, D lr 1e-4, betas (0.5, 0.999); D steps, then G.

Tensors in the --input / -o files of grads and step are named below; all files
are safetensors, read and written here with numpy alone.
"""
import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as tf

# ---------------------------------------------------------------- safetensors

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def st_load(path):
    """A safetensors file: ({name: numpy array}, {metadata key: string})."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for safetensors")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header of {n} bytes runs past the end")
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, t in header.items():
        if t["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: {name}: dtype {t['dtype']} not supported")
        lo, hi = t["data_offsets"]
        dt = np.dtype(_DTYPES[t["dtype"]]).newbyteorder("<")
        count = int(np.prod(t["shape"], dtype=np.int64))
        if hi > len(data) or hi - lo != count * dt.itemsize:
            raise ValueError(f"{path}: {name}: data offsets do not fit")
        out[name] = np.frombuffer(data[lo:hi], dt).reshape(t["shape"]).astype(dt.newbyteorder("="))
    return out, meta


def st_save(path, tensors, metadata=None):
    """Write {name: array or tensor} (in the dict's order) and a string map."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)   # the data starts 8-aligned, as the reference writer does
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_weights(model, path, prefix=""):
    """Load model's parameters from a safetensors file, names prefixed by
    prefix (e.g. "G." in a file holding several models); extra names are
    ignored, missing ones or wrong shapes are an error."""
    tensors, _ = st_load(path)
    state = {}
    for name, p in model.state_dict().items():
        key = prefix + name
        if key not in tensors:
            raise KeyError(f"{path}: no tensor '{key}'")
        if tuple(tensors[key].shape) != tuple(p.shape):
            raise ValueError(f"{path}: {key}: shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}")
        state[name] = torch.from_numpy(np.array(tensors[key], dtype=np.float32))
    model.load_state_dict(state)


def weights_of(model, prefix=""):
    return {prefix + k: v.detach().cpu().numpy().astype(np.float32)
            for k, v in model.state_dict().items()}


def save_weights(model, path, prefix="", metadata=None):
    st_save(path, weights_of(model, prefix), metadata)

# --------------------------------------------------------------------- models


def _inorm(x):
    return tf.instance_norm(x, eps=1e-5)


class UNet(nn.Module):
    """G: heatmap (N, 1, S, S) in [-1, 1] -> image (N, 3, S, S) in [-1, 1]."""

    def __init__(self, size=256, ngf=64, in_ch=1, out_ch=3):
        super().__init__()
        k = int(round(math.log2(size)))
        if size < 16 or 2 ** k != size:
            raise ValueError(f"size {size}: must be a power of two, at least 16")
        self.size, self.levels, self.ngf = size, k, ngf
        ch = [ngf * min(2 ** i, 8) for i in range(k)]
        self.down = nn.ModuleList(
            nn.Conv2d(in_ch if i == 0 else ch[i - 1], ch[i], 4, 2, 1) for i in range(k))
        # up.j runs j-th, at level i = k-1-j
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(ch[i] if i == k - 1 else 2 * ch[i],
                               ch[i - 1] if i > 0 else out_ch, 4, 2, 1)
            for i in range(k - 1, -1, -1))
        self.dropout_blocks = {0, 1, 2}
        self.dropout = False    # on only when asked: training, --stochastic

    def forward(self, x):
        k = self.levels
        d = [self.down[0](x)]
        for i in range(1, k):
            h = self.down[i](tf.leaky_relu(d[-1], 0.2))
            d.append(_inorm(h) if i < k - 1 else h)
        u = d[k - 1]
        for j in range(k - 1):
            h = _inorm(self.up[j](tf.relu(u)))
            if j in self.dropout_blocks:
                h = tf.dropout(h, 0.5, training=self.dropout)
            u = torch.cat([d[k - 2 - j], h], 1)
        return torch.tanh(self.up[k - 1](tf.relu(u)))


class PatchGAN(nn.Module):
    """D: cat([heatmap, rgb]) (N, 4, S, S) -> (N, 1, S/8 - 2, S/8 - 2) scores."""

    def __init__(self, ndf=64, in_ch=4):
        super().__init__()
        chans = [in_ch, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 1]
        strides = [2, 2, 2, 1, 1]
        self.conv = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], 4, strides[i], 1) for i in range(5))

    def forward(self, x):
        for i in range(4):
            x = self.conv[i](x)
            if i > 0:
                x = _inorm(x)
            x = tf.leaky_relu(x, 0.2)
        return self.conv[4](x)


class VGG16Features(nn.Module):
    """torchvision's vgg16().features[:16] (to relu3_3), the same names."""
    CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256]

    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.features(x)


_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def vgg_input(img):
    """[-1, 1] images -> ImageNet-normalised [0, 1] images."""
    return ((img + 1) * 0.5 - _MEAN.to(img.device)) / _STD.to(img.device)


def make_vgg(path=None, seed=0):
    """VGG16[:16] from a safetensors file (scripts/vgg16-export), or random
    (He-initialised, for benchmarks only) when path is None."""
    vgg = VGG16Features()
    if path:
        load_weights(vgg, path)
    else:
        g = torch.Generator().manual_seed(seed)
        for m in vgg.features:
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * 9
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2 / fan_out))
                    m.bias.zero_()
    return vgg.eval()


def init_models(size, ngf, ndf, seed):
    """G and D with weights N(0, 0.02) and zero biases (pix2pix's init)."""
    g = torch.Generator().manual_seed(seed)
    G, D = UNet(size, ngf), PatchGAN(ndf)
    with torch.no_grad():
        for m in list(G.modules()) + list(D.modules()):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
                m.bias.zero_()
    return G, D

# ---------------------------------------------------------------- training


class Config:
    lambda_l1 = 150.0
    lambda_perc = 2.0
    lr_g = 2e-4
    lr_d = 1e-4
    betas = (0.5, 0.999)


def make_optimisers(G, D, cfg=Config):
    return (torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas, eps=1e-8),
            torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas, eps=1e-8))


def train_step(G, D, vgg, opt_g, opt_d, A, B, cfg=Config, keep_grads=False):
    """One batch as p2p-train does it: D step, then G step. A (N, 1, S, S),
    B (N, 3, S, S), both in [-1, 1]. vgg None (or lambda_perc 0): no
    perceptual loss. Returns the losses (and the gradients of the step's
    parameters before the updates when keep_grads)."""
    fake = G(A)

    opt_d.zero_grad(set_to_none=True)
    real_score = D(torch.cat([A, B], 1))
    fake_score = D(torch.cat([A, fake.detach()], 1))
    loss_d = 0.5 * (tf.mse_loss(real_score, torch.ones_like(real_score)) +
                    tf.mse_loss(fake_score, torch.zeros_like(fake_score)))
    loss_d.backward()
    grads = {}
    if keep_grads:
        grads.update({"grad.D." + n: p.grad.clone() for n, p in D.named_parameters()})
    opt_d.step()

    opt_g.zero_grad(set_to_none=True)
    for p in D.parameters():
        p.requires_grad_(False)
    score = D(torch.cat([A, fake], 1))
    for p in D.parameters():
        p.requires_grad_(True)
    loss_gan = tf.mse_loss(score, torch.ones_like(score))
    loss_l1 = tf.l1_loss(fake, B)
    loss_g = loss_gan + cfg.lambda_l1 * loss_l1
    loss_perc = torch.zeros(())
    if vgg is not None and cfg.lambda_perc > 0:
        with torch.no_grad():
            target = vgg(vgg_input(B))
        loss_perc = tf.mse_loss(vgg(vgg_input(fake)), target)
        loss_g = loss_g + cfg.lambda_perc * loss_perc
    loss_g.backward()
    if keep_grads:
        grads.update({"grad.G." + n: p.grad.clone() for n, p in G.named_parameters()})
    opt_g.step()
    losses = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_g_gan": loss_gan.item(),
              "loss_g_l1": loss_l1.item(), "loss_g_perc": loss_perc.item()}
    return losses, grads


def model_grads(model, x, grad_out):
    """Forward x, backward grad_out (the gradient of a loss with respect to the
    output): output, input gradient and parameter gradients, by name."""
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    y = model(x)
    y.backward(grad_out)
    out = {"y": y.detach(), "grad.x": x.grad}
    out.update({"grad." + n: p.grad for n, p in model.named_parameters()})
    return out

# ------------------------------------------------------------------ timing


def _threads(n):
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass    # already set in this process


def bench(what="train", size=256, batch=4, threads=2, steps=3, warmup=1, perc=True,
          ngf=64, ndf=64, vgg16=None, seed=0, device="cpu", tf32=True, cudnn_benchmark=True):
    """Time training steps or generation on random data; the median over the
    steps of wall-clock and process CPU seconds. Returns a dict with
    images_per_s (and, on a GPU, the peak memory PyTorch's allocator held for
    tensors and reserved in all).

    On a GPU: cuDNN autotuning on unless cudnn_benchmark is False; TF32 for
    the convolutions as PyTorch's default unless tf32 is False (the matrix
    products outside convolutions follow the same switch). A training step
    ends with its losses read back (.item()), as p2p-train's do; generation
    includes the copy of the 8-bit images to the host, which p2p-gen needs."""
    _threads(threads)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(seed)
    G, D = init_models(size, ngf, ndf, seed)
    G, D = G.to(dev), D.to(dev)
    A = (torch.rand(batch, 1, size, size) * 2 - 1).to(dev)
    B = (torch.rand(batch, 3, size, size) * 2 - 1).to(dev)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, cpu = [], []
    if what == "train":
        vgg = make_vgg(vgg16, seed).to(dev) if perc else None
        opt_g, opt_d = make_optimisers(G, D)
        G.dropout = True
        for i in range(warmup + steps):
            sync()
            t, c = time.perf_counter(), time.process_time()
            train_step(G, D, vgg, opt_g, opt_d, A, B)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
    elif what == "gen":
        G.eval()
        with torch.no_grad():
            for i in range(warmup + steps):
                sync()
                t, c = time.perf_counter(), time.process_time()
                img = G(A)
                # the generator writes 8-bit pixels: count the conversion
                px = ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
                if cuda:
                    px = px.cpu()
                if i >= warmup:
                    times.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
    else:
        raise ValueError(f"what: train or gen, not {what}")
    med = statistics.median(times)
    r = {"impl": "pytorch", "torch": torch.__version__, "what": what, "size": size,
         "batch": batch, "threads": threads, "perc": bool(perc and what == "train"),
         "ngf": ngf, "ndf": ndf, "steps": steps, "device": device,
         "seconds_per_step": med, "seconds_mean": statistics.fmean(times),
         "cpu_seconds_per_step": statistics.median(cpu), "images_per_s": batch / med}
    if cuda:
        r.update({"gpu": torch.cuda.get_device_name(), "tf32": tf32,
                  "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": cudnn_benchmark,
                  "peak_allocated_mib": torch.cuda.max_memory_allocated() / 2 ** 20,
                  "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2 ** 20})
    return r

# --------------------------------------------------------------- commands


def _t(a):
    return torch.from_numpy(np.array(a, dtype=np.float32))


def cmd_names(args):
    G, D = UNet(args.size, args.ngf), PatchGAN(args.ndf)
    for tag, m in (("G", G), ("D", D), ("VGG16[:16]", VGG16Features())):
        total = sum(p.numel() for p in m.parameters())
        print(f"# {tag}: {total:,} parameters")
        for n, p in m.state_dict().items():
            print(n, tuple(p.shape))


def cmd_init(args):
    G, D = init_models(args.size, args.ngf, args.ndf, args.seed)
    t = weights_of(G, "G.")
    t.update(weights_of(D, "D."))
    st_save(args.output, t, {"size": args.size, "ngf": args.ngf, "ndf": args.ndf,
                             "seed": args.seed})


def cmd_grads(args):
    """IN holds x (the model's input) and grad_out (the gradient flowing
    back into its output); OUT gets y, grad.x and grad.NAME for every
    parameter. WEIGHTS holds the model's names, plain or prefixed "G."/"D.".
    Dropout is off: the comparison is deterministic."""
    tensors, _ = st_load(args.input)
    x, gy = _t(tensors["x"]), _t(tensors["grad_out"])
    if args.model == "G":
        model = UNet(x.shape[-1], args.ngf or _guess_width(args.weights, "down.0.weight", 0))
    else:
        model = PatchGAN(args.ndf or _guess_width(args.weights, "conv.0.weight", 0))
    load_weights(model, args.weights, _prefix(args.weights, model, args.model))
    st_save(args.output, model_grads(model, x, gy))


def cmd_step(args):
    """IN holds A (N, 1, S, S) and B (N, 3, S, S) in [-1, 1]; WEIGHTS holds
    G.* and D.*. Runs --steps training steps (dropout off unless --dropout)
    and writes the losses of every step as metadata (JSON), the gradients of
    the first step (grad.G.*, grad.D.*) and the final weights (G.*, D.*)."""
    tensors, _ = st_load(args.input)
    A, B = _t(tensors["A"]), _t(tensors["B"])
    size = A.shape[-1]
    G = UNet(size, _guess_width(args.weights, "G.down.0.weight", 0))
    D = PatchGAN(_guess_width(args.weights, "D.conv.0.weight", 0))
    load_weights(G, args.weights, "G.")
    load_weights(D, args.weights, "D.")
    G.dropout = args.dropout
    cfg = Config()
    cfg.lambda_l1, cfg.lambda_perc = args.lambda_l1, args.lambda_perc
    cfg.lr_g, cfg.lr_d = args.lr, args.lr_d
    if args.lambda_perc > 0 and not args.vgg16:
        sys.exit("torch_ref.py: --lambda-perc > 0 needs --vgg16 FILE (or --lambda-perc 0)")
    vgg = make_vgg(args.vgg16) if args.lambda_perc > 0 else None
    opt_g, opt_d = make_optimisers(G, D, cfg)
    log, first = [], {}
    for i in range(args.steps):
        losses, grads = train_step(G, D, vgg, opt_g, opt_d, A, B, cfg, keep_grads=(i == 0))
        log.append(losses)
        first = first or grads
    out = dict(first)
    out.update(weights_of(G, "G."))
    out.update(weights_of(D, "D."))
    st_save(args.output, out, {"losses": json.dumps(log)})
    print(json.dumps(log[-1]))


def _guess_width(path, key, dim):
    tensors, _ = st_load(path)
    for k in (key, "G." + key, "D." + key):
        if k in tensors:
            return tensors[k].shape[dim]
    raise KeyError(f"{path}: no tensor '{key}'")


def _prefix(path, model, tag):
    tensors, _ = st_load(path)
    first = next(iter(model.state_dict()))
    return "" if first in tensors else tag + "."


def cmd_bench(args):
    r = bench(args.what, args.size, args.batch, args.threads, args.steps, args.warmup,
              args.perc, args.ngf, args.ndf, args.vgg16, args.seed, args.device,
              not args.no_tf32, not args.no_cudnn_benchmark)
    r["env"] = {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("OPENBLAS", "OMP", "GOTO", "DNNL", "ONEDNN"))}
    print(json.dumps(r))


def cmd_selftest(args):
    """Quick checks of this file itself: shapes, names, counts, round trips."""
    import tempfile
    G, D = UNet(256, 64), PatchGAN(64)
    assert sum(p.numel() for p in G.parameters()) == 54407555
    assert sum(p.numel() for p in D.parameters()) == 2765761
    assert D(torch.zeros(1, 4, 256, 256)).shape == (1, 1, 30, 30)
    assert list(G.state_dict())[:2] == ["down.0.weight", "down.0.bias"]
    G, D = init_models(32, 8, 8, 1)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = G(x)
    assert y.shape == (2, 3, 32, 32) and y.abs().max() < 1
    assert torch.equal(y, G(x)), "dropout must be off by default"
    G.dropout = True
    assert not torch.equal(y, G(x)), "dropout on changes the output"
    G.dropout = False
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.safetensors")
        save_weights(G, path, "G.", {"size": 32})
        t, meta = st_load(path)
        assert meta == {"size": "32"} and t["G.up.4.bias"].shape == (3,)
        G2 = UNet(32, 8)
        load_weights(G2, path, "G.")
        assert torch.equal(G2(x), y)
        mixed = {"u8": np.arange(5, dtype=np.uint8), "f64": np.ones((2, 3)),
                 "i64": np.array([-1, 2**40]), "empty": np.zeros((0, 4), np.float32)}
        st_save(path, mixed)
        t, meta = st_load(path)
        assert meta == {} and all(np.array_equal(t[k], v) and t[k].dtype == v.dtype
                                  for k, v in mixed.items())
    vgg = make_vgg(None, 0)
    names = [n for n in vgg.state_dict()]
    assert names[0] == "features.0.weight" and names[-1] == "features.14.bias" and len(names) == 14
    opt_g, opt_d = make_optimisers(G, D)
    B = torch.rand(2, 3, 32, 32) * 2 - 1
    losses, grads = train_step(G, D, vgg, opt_g, opt_d, x, B, keep_grads=True)
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert set(grads) == {"grad.G." + n for n, _ in G.named_parameters()} | \
        {"grad.D." + n for n, _ in D.named_parameters()}
    print("torch_ref.py: selftest ok")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="torch_ref.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("names", help="print the parameter names and shapes")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p = sub.add_parser("init", help="write seeded G.* and D.* weights")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("grads", help="output and gradients of G or D")
    p.add_argument("--model", choices=["G", "D"], required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--ngf", type=int, default=0)
    p.add_argument("--ndf", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("step", help="training steps on one batch")
    p.add_argument("--weights", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--vgg16")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--lambda-l1", type=float, default=Config.lambda_l1)
    p.add_argument("--lambda-perc", type=float, default=Config.lambda_perc)
    p.add_argument("--lr", type=float, default=Config.lr_g)
    p.add_argument("--lr-d", type=float, default=Config.lr_d)
    p.add_argument("--dropout", action="store_true")
    p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("bench", help="time training steps or generation")
    p.add_argument("--what", choices=["train", "gen"], default="train")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--perc", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--vgg16")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--no-tf32", action="store_true", help="strict FP32 on the GPU")
    p.add_argument("--no-cudnn-benchmark", action="store_true",
                   help="no cuDNN autotuning on the GPU")
    sub.add_parser("selftest", help="check this file")
    args = ap.parse_args(argv)
    {"names": cmd_names, "init": cmd_init, "grads": cmd_grads, "step": cmd_step,
     "bench": cmd_bench, "selftest": cmd_selftest}[args.cmd](args)


if __name__ == "__main__":
    main()
