#!/usr/bin/env python3
# A copy of ../shared/bench/torch_anchor.py (the project's PyTorch speed anchor), kept here
# so `main.py benchmark --anchor_python=... --anchor_stargan=...` works from a fresh clone.
# It runs only under the anchor's own Python (with torch); the project never imports it.
"""CPU throughput of the official PyTorch StarGAN (yunjey/stargan) at the
project's problem size: 48x48 grayscale faces, 4 domains (FER2013 emotions).

The networks are imported, not copied, from the official model.py found in the
directory given by --stargan (an exported copy of the public repository):

    git clone https://github.com/yunjey/stargan /path/to/stargan
    # or, from a bare mirror:  git -C /path/to/bare archive HEAD | tar -x -C /path/to/stargan

Adaptation (the official classes hard-code 3 image channels): after building
the official Generator/Discriminator, three layers are replaced with layers of
identical kind, kernel, stride, padding and bias setting but 1 image channel:
    G.main[0]   Conv2d(3+c_dim -> conv_dim, k7 s1 p3, bias=False)  becomes  1+c_dim -> conv_dim
    G.main[-2]  Conv2d(conv_dim -> 3,       k7 s1 p3, bias=False)  becomes  conv_dim -> 1
    D.main[0]   Conv2d(3 -> conv_dim,       k4 s2 p1, bias=True)   becomes  1 -> conv_dim
Everything else (InstanceNorm2d(affine, track_running_stats), residual blocks,
ConvTranspose2d up-sampling, PatchGAN heads) is the official code unchanged.

The training iteration re-expresses Solver.train() of the official solver.py
(single-label "RaFD" branch, softmax cross-entropy, one-hot domain labels):
  D step every iteration: -mean(D(x_real)) + mean(D(G(x_real,c_trg).detach()))
      + lambda_cls*CE + lambda_gp*GP on x_hat = a*x_real + (1-a)*x_fake
  G step when (i+1) % n_critic == 0: -mean(D(G(x,c_trg))) + lambda_cls*CE
      + lambda_rec*mean|x - G(G(x,c_trg),c_org)|
  Adam(lr 1e-4, betas (0.5, 0.999)) for both; the per-step .item() logging
  reads are kept. Data loading is excluded: inputs are random tensors.

Throughput = batch_size * steps / seconds, "steps" counting D iterations (as the
official --num_iters does); the reported number is the median of --windows
timed windows after a warm-up.

Examples:
    taskset -c 1 python torch_anchor.py --stargan /path/to/stargan --batch-size 8 --n-critic 1
    taskset -c 1 python torch_anchor.py --stargan /path/to/stargan --infer
    taskset -c 1 python torch_anchor.py --stargan /path/to/stargan --flops
"""
import argparse
import os
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stargan", required=True,
                   help="directory holding the official repo's files (model.py)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=None,
                   help="D iterations per timed window (default: 5 if n_critic=1, "
                        "else n_critic); must be a multiple of --n-critic")
    p.add_argument("--windows", type=int, default=5, help="timed windows (median reported)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed iterations first (default: one window)")
    p.add_argument("--n-critic", type=int, default=5,
                   help="D updates per G update (official default 5; 1 = both every step)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--c-dim", type=int, default=4)
    p.add_argument("--conv-dim", type=int, default=64)
    p.add_argument("--g-repeat-num", type=int, default=6)
    p.add_argument("--d-repeat-num", type=int, default=4,
                   help="48 / 2**4 = 3: the D's last feature map is 3x3")
    p.add_argument("--lambda-cls", type=float, default=1.0)
    p.add_argument("--lambda-rec", type=float, default=10.0)
    p.add_argument("--lambda-gp", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--infer", action="store_true",
                   help="measure generator inference (no_grad) instead of training")
    p.add_argument("--infer-batches", default="1,64")
    p.add_argument("--infer-reps", type=int, default=None,
                   help="forward calls per timed window (default: ~64 images per window, min 2)")
    p.add_argument("--infer-norm", choices=["eval", "train"], default="eval",
                   help="module mode for inference. eval: InstanceNorm uses its running "
                        "stats (G.eval()); train: per-image statistics, which is what the "
                        "official Solver.test() does since it never calls G.eval()")
    p.add_argument("--flops", action="store_true",
                   help="count FLOPs with torch.utils.flop_counter and exit")
    return p.parse_args()


args = parse_args()

import numpy as np  # noqa: E402  (the official model.py needs it too)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

sys.path.insert(0, os.path.abspath(args.stargan))
if not os.path.isfile(os.path.join(args.stargan, "model.py")):
    sys.exit("--stargan %s has no model.py" % args.stargan)
from model import Discriminator, Generator  # noqa: E402  (official code)


# --------------------------------------------------------------------------- #
#  Build the official networks, adapted to args.channels image channels.      #
# --------------------------------------------------------------------------- #
def _same_conv(old, in_ch, out_ch):
    assert type(old) is nn.Conv2d, type(old)
    return nn.Conv2d(in_ch, out_ch, kernel_size=old.kernel_size, stride=old.stride,
                     padding=old.padding, bias=old.bias is not None)


def build_models():
    G = Generator(conv_dim=args.conv_dim, c_dim=args.c_dim, repeat_num=args.g_repeat_num)
    D = Discriminator(image_size=args.image_size, conv_dim=args.conv_dim,
                      c_dim=args.c_dim, repeat_num=args.d_repeat_num)
    # The official classes hard-code RGB; check that, then swap the 3 layers.
    assert G.main[0].in_channels == 3 + args.c_dim
    assert isinstance(G.main[-1], nn.Tanh) and G.main[-2].out_channels == 3
    assert D.main[0].in_channels == 3
    if args.channels != 3:
        G.main[0] = _same_conv(G.main[0], args.channels + args.c_dim, G.main[0].out_channels)
        G.main[-2] = _same_conv(G.main[-2], G.main[-2].in_channels, args.channels)
        D.main[0] = _same_conv(D.main[0], args.channels, D.main[0].out_channels)
    # Shape check: D's last feature map and the class head.
    with torch.no_grad():
        x = torch.zeros(2, args.channels, args.image_size, args.image_size)
        c = torch.zeros(2, args.c_dim)
        y = G(x, c)
        assert y.shape == x.shape, y.shape
        h = D.main(x)
        src, cls = D(x)
        assert cls.shape == (2, args.c_dim), cls.shape
    G.train()
    D.train()
    return G, D, tuple(h.shape[2:]), tuple(src.shape[1:])


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- #
#  Official training step, re-expressed (solver.py: Solver.train, RaFD branch) #
# --------------------------------------------------------------------------- #
def label2onehot(labels, dim):
    batch_size = labels.size(0)
    out = torch.zeros(batch_size, dim)
    out[np.arange(batch_size), labels.long()] = 1
    return out


def gradient_penalty(y, x):
    weight = torch.ones(y.size())
    dydx = torch.autograd.grad(outputs=y, inputs=x, grad_outputs=weight,
                               retain_graph=True, create_graph=True, only_inputs=True)[0]
    dydx = dydx.view(dydx.size(0), -1)
    dydx_l2norm = torch.sqrt(torch.sum(dydx ** 2, dim=1))
    return torch.mean((dydx_l2norm - 1) ** 2)


class Trainer:
    def __init__(self, G, D):
        self.G, self.D = G, D
        self.g_optimizer = torch.optim.Adam(G.parameters(), args.lr, [0.5, 0.999])
        self.d_optimizer = torch.optim.Adam(D.parameters(), args.lr, [0.5, 0.999])

    def reset_grad(self):
        self.g_optimizer.zero_grad()
        self.d_optimizer.zero_grad()

    def prepare(self, x_real, label_org):
        rand_idx = torch.randperm(label_org.size(0))
        label_trg = label_org[rand_idx]
        c_org = label2onehot(label_org, args.c_dim)
        c_trg = label2onehot(label_trg, args.c_dim)
        return x_real, label_org, label_trg, c_org, c_trg

    def d_step(self, x_real, label_org, label_trg, c_org, c_trg):
        G, D = self.G, self.D
        out_src, out_cls = D(x_real)
        d_loss_real = -torch.mean(out_src)
        d_loss_cls = F.cross_entropy(out_cls, label_org)

        x_fake = G(x_real, c_trg)
        out_src, out_cls = D(x_fake.detach())
        d_loss_fake = torch.mean(out_src)

        alpha = torch.rand(x_real.size(0), 1, 1, 1)
        x_hat = (alpha * x_real.data + (1 - alpha) * x_fake.data).requires_grad_(True)
        out_src, _ = D(x_hat)
        d_loss_gp = gradient_penalty(out_src, x_hat)

        d_loss = d_loss_real + d_loss_fake + args.lambda_cls * d_loss_cls + args.lambda_gp * d_loss_gp
        self.reset_grad()
        d_loss.backward()
        self.d_optimizer.step()
        return {"D/loss_real": d_loss_real.item(), "D/loss_fake": d_loss_fake.item(),
                "D/loss_cls": d_loss_cls.item(), "D/loss_gp": d_loss_gp.item()}

    def g_step(self, x_real, label_org, label_trg, c_org, c_trg):
        G, D = self.G, self.D
        x_fake = G(x_real, c_trg)
        out_src, out_cls = D(x_fake)
        g_loss_fake = -torch.mean(out_src)
        g_loss_cls = F.cross_entropy(out_cls, label_trg)

        x_reconst = G(x_fake, c_org)
        g_loss_rec = torch.mean(torch.abs(x_real - x_reconst))

        g_loss = g_loss_fake + args.lambda_rec * g_loss_rec + args.lambda_cls * g_loss_cls
        self.reset_grad()
        g_loss.backward()
        self.g_optimizer.step()
        return {"G/loss_fake": g_loss_fake.item(), "G/loss_rec": g_loss_rec.item(),
                "G/loss_cls": g_loss_cls.item()}

    def iteration(self, i, x_real, label_org):
        batch = self.prepare(x_real, label_org)
        loss = self.d_step(*batch)
        if (i + 1) % args.n_critic == 0:
            loss.update(self.g_step(*batch))
        return loss


def random_batches(n, batch_size):
    out = []
    for _ in range(n):
        x = torch.rand(batch_size, args.channels, args.image_size, args.image_size) * 2 - 1
        y = torch.randint(0, args.c_dim, (batch_size,))
        out.append((x, y))
    return out


def count(fn):
    """FLOPs of the aten ops that torch.utils.flop_counter knows (convolutions,
    their backward incl. double backward, matmuls). FlopCounterMode itself is
    not used: its module tracker breaks torch.autograd.grad on a leaf (the
    gradient penalty), so its formula table is applied by a bare dispatch mode."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class _Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, a=(), kw=None):
            kw = kw or {}
            out = func(*a, **kw)
            f = flop_registry.get(func._overloadpacket)
            if f is not None:
                _Count.total += f(*a, **kw, out_val=out)
            return out

    with _Count():
        fn()
    return _Count.total


# --------------------------------------------------------------------------- #
#  Modes                                                                      #
# --------------------------------------------------------------------------- #
def describe(G, D, fmap, src):
    print("# torch %s, threads=%d, official model.py from %s"
          % (torch.__version__, torch.get_num_threads(), os.path.abspath(args.stargan)))
    print("# G params %d, D params %d, D final feature map %s, out_src %s"
          % (n_params(G), n_params(D), fmap, src))


def run_flops():
    G, D, fmap, src = build_models()
    describe(G, D, fmap, src)
    B = args.batch_size
    (x, y), = random_batches(1, B)
    c = label2onehot(y, args.c_dim)
    with torch.no_grad():
        g_fwd = count(lambda: G(x, c)) / B
        d_fwd = count(lambda: D(x)) / B
    tr = Trainer(G, D)
    batch = tr.prepare(x, y)
    d_step = count(lambda: tr.d_step(*batch)) / B
    g_step = count(lambda: tr.g_step(*batch)) / B
    print("# FLOPs per 48x48 image (conv/matmul only; 1 FMA = 2 FLOPs):")
    print("flops G_forward=%.4g D_forward=%.4g" % (g_fwd, d_fwd))
    print("flops D_step=%.4g G_step=%.4g iter_n_critic1=%.4g iter_n_critic5=%.4g"
          % (d_step, g_step, d_step + g_step, d_step + g_step / 5))


def run_train():
    n_critic = args.n_critic
    steps = args.steps or (5 if n_critic == 1 else n_critic)
    if steps % n_critic:
        sys.exit("--steps must be a multiple of --n-critic (same G updates per window)")
    warmup = steps if args.warmup is None else args.warmup
    warmup = -(-warmup // n_critic) * n_critic  # keep windows aligned to G updates

    G, D, fmap, src = build_models()
    describe(G, D, fmap, src)
    tr = Trainer(G, D)
    data = random_batches(4, args.batch_size)

    # FLOPs of one D step / one G step at this batch (on a throw-away copy).
    import copy
    tr_c = Trainer(copy.deepcopy(G), copy.deepcopy(D))
    b0 = tr_c.prepare(*data[0])
    d_fl = count(lambda: tr_c.d_step(*b0))
    g_fl = count(lambda: tr_c.g_step(*b0))
    del tr_c
    flops_per_iter = d_fl + g_fl / n_critic

    i = 0
    t0 = time.perf_counter()
    for _ in range(warmup):
        tr.iteration(i, *data[i % len(data)])
        i += 1
    print("# warm-up %d iterations: %.2f s" % (warmup, time.perf_counter() - t0))

    rates = []
    for w in range(args.windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = tr.iteration(i, *data[i % len(data)])
            i += 1
        dt = time.perf_counter() - t0
        rate = args.batch_size * steps / dt
        rates.append(rate)
        print("# window %d: %d steps in %.3f s -> %.3f img/s, %.1f GFLOP/s"
              % (w, steps, dt, rate, rate * flops_per_iter / args.batch_size / 1e9))
    assert all(np.isfinite(v) for v in loss.values()), loss
    med = statistics.median(rates)
    print("# img/s min %.3f median %.3f max %.3f; FLOPs/img/iter %.4g -> %.1f GFLOP/s at median"
          % (min(rates), med, max(rates), flops_per_iter / args.batch_size,
             med * flops_per_iter / args.batch_size / 1e9))
    print("torch_anchor img_per_s=%.3f batch=%d n_critic=%d threads=%d"
          % (med, args.batch_size, n_critic, torch.get_num_threads()))


def run_infer():
    G, D, fmap, src = build_models()
    describe(G, D, fmap, src)
    G.train(args.infer_norm == "train")
    results = []
    for B in [int(b) for b in args.infer_batches.split(",")]:
        (x, y), = random_batches(1, B)
        c = label2onehot(y, args.c_dim)
        reps = args.infer_reps or max(2, 64 // B)
        with torch.no_grad():
            g_fl = count(lambda: G(x, c)) / B
            for _ in range(max(2, reps)):  # warm-up
                G(x, c)
            rates = []
            for w in range(args.windows):
                t0 = time.perf_counter()
                for _ in range(reps):
                    G(x, c)
                dt = time.perf_counter() - t0
                rates.append(B * reps / dt)
        med = statistics.median(rates)
        print("# infer batch %d: img/s min %.2f median %.2f max %.2f; %.1f GFLOP/s at median"
              % (B, min(rates), med, max(rates), med * g_fl / 1e9))
        results.append("batch%d=%.2f" % (B, med))
    print("torch_anchor_infer img_per_s %s norm=%s threads=%d"
          % (" ".join(results), args.infer_norm, torch.get_num_threads()))


if __name__ == "__main__":
    if args.flops:
        run_flops()
    elif args.infer:
        run_infer()
    else:
        run_train()
