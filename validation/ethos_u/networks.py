"""Networks of the MLPerf Tiny kind, MobileNetV2 and a transformer block, each written once
against a small builder interface and built two ways from that one description:

* ``TorchBuilder`` (``torch_model(name)``): a PyTorch module that FODLAM profiles (fp32
  weights; an int8 profile costs it at 8 bits, as deployed);
* ``tflite_build.TFLiteBuilder`` (run with Arm's Vela installed): the int8 TFLite twin that
  Vela compiles and estimates.

Shapes are (H, W, C) as TFLite has them; convolutions pad "same". The MACs of the two
builds agree exactly (``validation/ethos_u/compare.py`` checks it on every network).
"""

from __future__ import annotations


def ds_cnn(b):
    """DS-CNN (small), the MLPerf Tiny keyword-spotting reference: 49x10 MFCC features."""
    x = b.input((49, 10, 1))
    x = b.conv(x, 64, (10, 4), (2, 2), relu=True)
    for _ in range(4):
        x = b.dw(x, (3, 3), (1, 1), relu=True)
        x = b.conv(x, 64, (1, 1), (1, 1), relu=True)
    x = b.avgpool(x)
    return b.softmax(b.fc(x, 12))


def mobilenet_v1_025(b):
    """MobileNetV1 0.25 at 96x96x3, the MLPerf Tiny visual-wake-words reference."""
    x = b.input((96, 96, 3))
    x = b.conv(x, 8, (3, 3), (2, 2), relu=True)
    for ch, s in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1),
                  (128, 1), (128, 1), (128, 1), (256, 2), (256, 1)]:
        x = b.dw(x, (3, 3), (s, s), relu=True)
        x = b.conv(x, ch, (1, 1), (1, 1), relu=True)
    x = b.avgpool(x)
    return b.softmax(b.fc(x, 2))


def resnet8(b):
    """ResNet-8 on 32x32x3 (CIFAR-10), the MLPerf Tiny image-classification reference."""
    x = b.input((32, 32, 3))
    x = b.conv(x, 16, (3, 3), (1, 1), relu=True)
    for ch, s in [(16, 1), (32, 2), (64, 2)]:
        y = b.conv(x, ch, (3, 3), (s, s), relu=True)
        y = b.conv(y, ch, (3, 3), (1, 1))
        short = x if s == 1 else b.conv(x, ch, (1, 1), (s, s))
        x = b.relu(b.add(y, short))
    x = b.avgpool(x)
    return b.softmax(b.fc(x, 10))


def autoencoder(b):
    """The MLPerf Tiny anomaly-detection reference: a dense autoencoder over 640 features."""
    x = b.input((1, 1, 640))
    for n in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = b.fc(x, n, relu=True)
    return b.fc(x, 640)


def mobilenet_v2(b, width=1.0, res=224):
    """MobileNetV2 (Sandler et al., CVPR 2018) at a width multiplier and resolution."""
    def ch(c):
        return max(8, int(c * width + 4) // 8 * 8)
    x = b.input((res, res, 3))
    x = b.conv(x, ch(32), (3, 3), (2, 2), relu=True)
    cin = ch(32)
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:
        for j in range(n):
            stride = s if j == 0 else 1
            y = b.conv(x, cin * t, (1, 1), (1, 1), relu=True) if t != 1 else x
            y = b.dw(y, (3, 3), (stride, stride), relu=True)
            y = b.conv(y, ch(c), (1, 1), (1, 1))
            x = b.add(y, x) if stride == 1 and cin == ch(c) else y
            cin = ch(c)
    x = b.conv(x, max(1280, ch(1280)), (1, 1), (1, 1), relu=True)
    x = b.avgpool(x)
    return b.fc(x, 1000)


def transformer_block(b, seq=64, d=128, heads=4, ff=256):
    """One encoder block over ``seq`` tokens of width ``d``: Q, K and V projections, per
    head the product of two activations Q K^T, a softmax, the product with V, the output
    projection, a residual add, and the feed-forward pair with its residual add."""
    x = b.input((1, seq, d))
    q, k, v = b.fc(x, d), b.fc(x, d), b.fc(x, d)
    att = b.attention(q, k, v, heads)
    y = b.add(b.fc(att, d), x)
    z = b.fc(b.fc(y, ff, relu=True), d)
    return b.add(z, y)


NETWORKS = {
    "ds_cnn": ds_cnn,
    "mobilenet_v1_025": mobilenet_v1_025,
    "resnet8": resnet8,
    "autoencoder": autoencoder,
    "mobilenet_v2_035_96": lambda b: mobilenet_v2(b, 0.35, 96),
    "mobilenet_v2": mobilenet_v2,
    "transformer_block": transformer_block,
}


def same_out(size: int, k: int, s: int) -> int:
    return -(-size // s)


class TorchBuilder:
    """Records the network as a PyTorch module (NCHW inside, the same arithmetic)."""

    def __init__(self):
        import torch.nn as nn
        self.nn = nn
        self.mods = nn.ModuleList()
        self.steps = []          # (kind, module index or None, input ids, extra)
        self.shapes = []         # (H, W, C) per value id

    def _new(self, shape, kind, inputs, module=None, extra=None):
        idx = None
        if module is not None:
            self.mods.append(module)
            idx = len(self.mods) - 1
        self.steps.append((kind, idx, inputs, extra))
        self.shapes.append(shape)
        return len(self.shapes) - 1

    def input(self, shape):
        return self._new(tuple(shape), "input", ())

    def _pad(self, size, k, s):
        out = same_out(size, k, s)
        total = max(0, (out - 1) * s + k - size)
        return out, total // 2, total - total // 2

    def conv(self, x, cout, kernel, stride, relu=False, groups=1):
        import torch.nn as nn
        h, w, c = self.shapes[x]
        oh, pt, pb = self._pad(h, kernel[0], stride[0])
        ow, pl, pr = self._pad(w, kernel[1], stride[1])
        # "same" padding: symmetric where that gives TFLite's output size (the MACs are the
        # same), an explicit pad only where it cannot
        sym = (max(pt, pb), max(pl, pr))
        if all((size + 2 * p - k) // s + 1 == out for size, p, k, s, out in
               ((h, sym[0], kernel[0], stride[0], oh), (w, sym[1], kernel[1], stride[1], ow))):
            mod = nn.Conv2d(c, cout, kernel, stride, padding=sym, groups=groups)
        else:
            mod = nn.Sequential(nn.ZeroPad2d((pl, pr, pt, pb)),
                                nn.Conv2d(c, cout, kernel, stride, padding=0, groups=groups))
        if relu:
            mod = nn.Sequential(mod, nn.ReLU())
        return self._new((oh, ow, cout), "call", (x,), mod)

    def dw(self, x, kernel, stride, relu=False):
        return self.conv(x, self.shapes[x][2], kernel, stride, relu, groups=self.shapes[x][2])

    def fc(self, x, n, relu=False):
        import torch.nn as nn
        h, w, c = self.shapes[x]
        mod = nn.Sequential(nn.Linear(c, n), nn.ReLU()) if relu else nn.Linear(c, n)
        return self._new((h, w, n), "tokens", (x,), mod)

    def add(self, a, b):
        return self._new(self.shapes[a], "add", (a, b))

    def relu(self, x):
        return self._new(self.shapes[x], "call", (x,), self.nn.ReLU())

    def avgpool(self, x):
        return self._new((1, 1, self.shapes[x][2]), "call", (x,), self.nn.AdaptiveAvgPool2d(1))

    def softmax(self, x):
        return self._new(self.shapes[x], "softmax", (x,))

    def attention(self, q, k, v, heads):
        return self._new(self.shapes[q], "attention", (q, k, v), extra=heads)

    def module(self):
        import torch
        import torch.nn as nn

        steps, shapes = list(self.steps), list(self.shapes)

        class Net(nn.Module):
            def __init__(self, mods):
                super().__init__()
                self.mods = mods

            def forward(self, x):
                vals = []
                for (kind, idx, inputs, extra), shape in zip(steps, shapes):
                    if kind == "input":
                        vals.append(x)
                        continue
                    args = [vals[i] for i in inputs]
                    if kind == "call":
                        vals.append(self.mods[idx](args[0]))
                    elif kind == "tokens":      # a Linear over the channels of every position
                        t = args[0]
                        if t.shape[2] * t.shape[3] == 1:     # one position: no transposes
                            vals.append(self.mods[idx](t.flatten(1))[:, :, None, None])
                        else:
                            vals.append(self.mods[idx](t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
                    elif kind == "add":
                        vals.append(args[0] + args[1])
                    elif kind == "softmax":
                        vals.append(torch.softmax(args[0], dim=1))
                    elif kind == "attention":   # tokens on W, width on C
                        qh, kh, vh = (a.flatten(2).reshape(a.shape[0], extra, -1, a.shape[-1])
                                      for a in args)      # (n, heads, d/heads, seq)
                        s = torch.softmax(qh.transpose(-1, -2) @ kh, dim=-1)   # (n, h, seq, seq)
                        o = vh @ s.transpose(-1, -2)                           # (n, h, d/h, seq)
                        vals.append(o.reshape(args[0].shape))
                return vals[-1]

        return Net(self.mods)


def torch_model(name: str):
    b = TorchBuilder()
    NETWORKS[name](b)
    return b.module(), (1, b.shapes[0][2], b.shapes[0][0], b.shapes[0][1])
