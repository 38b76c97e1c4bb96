"""Detectors as users bring them (issue 22): plain tensor attributes (anchor sizes, priors),
lists of images of different sizes, data-dependent post-processing (score thresholds, NMS).
Written in plain PyTorch (there is no CPU torchvision beside the torch pin); every MAC
count is checked against a hand formula."""

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import fodlam  # noqa: E402

C, A = 5, 3          # classes, anchors per position


def conv_macs(cin, cout, k, h, w, groups=1):
    return cin // groups * cout * k * k * h * w


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.c2 = nn.Conv2d(16, 32, 3, 2, 1)

    def forward(self, x):
        return F.relu(self.c2(F.relu(self.c1(x))))

    @staticmethod
    def macs(h, w):
        h1, w1 = (h + 1) // 2, (w + 1) // 2
        h2, w2 = (h1 + 1) // 2, (w1 + 1) // 2
        return conv_macs(3, 16, 3, h1, w1) + conv_macs(16, 32, 3, h2, w2), (h2, w2)


class Anchors(nn.Module):
    """Anchors from sizes kept as a plain tensor attribute (not a buffer), as torchvision's
    AnchorGenerator keeps its cell anchors."""

    def __init__(self):
        super().__init__()
        self.sizes = torch.tensor([8.0, 16.0, 32.0])

    def forward(self, feature, stride):
        h, w = feature.shape[-2:]
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centre = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
        half = (self.sizes / 2).reshape(1, -1, 1) * torch.tensor([-1.0, -1.0, 1.0, 1.0])
        return (centre + half).reshape(-1, 4)


def keep_scores(scores, threshold=0.0):
    """The data-dependent step every detector has: the boxes above a score threshold."""
    return torch.nonzero(scores > threshold).flatten()


def roi_crops(feature, boxes, stride, size):
    """RoI pooling by cropping the feature map at each box (data-dependent coordinates)."""
    h, w = feature.shape[-2:]
    out = []
    for b in (boxes / stride).round().long().tolist():
        x0, y0 = max(0, min(b[0], w - 1)), max(0, min(b[1], h - 1))
        x1, y1 = max(x0 + 1, min(b[2], w)), max(y0 + 1, min(b[3], h))
        out.append(F.adaptive_max_pool2d(feature[..., y0:y1, x0:x1], size))
    return torch.cat(out) if out else feature.new_zeros((0, feature.shape[1], size, size))


class FasterRCNN(nn.Module):
    def __init__(self, mask=False, proposals=16, rois=6):
        super().__init__()
        self.backbone, self.anchors = Backbone(), Anchors()
        self.rpn_conv = nn.Conv2d(32, 32, 3, padding=1)
        self.rpn_cls, self.rpn_box = nn.Conv2d(32, A, 1), nn.Conv2d(32, 4 * A, 1)
        self.fc1, self.fc2 = nn.Linear(32 * 7 * 7, 64), nn.Linear(64, 64)
        self.cls, self.box = nn.Linear(64, C), nn.Linear(64, 4 * C)
        self.mask = mask
        if mask:
            self.m1, self.m2 = nn.Conv2d(32, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)
            self.up = nn.ConvTranspose2d(32, 32, 2, 2)
            self.m_out = nn.Conv2d(32, C, 1)
        self.proposals, self.rois = proposals, rois
        self.kept = []

    def forward(self, images):
        self.kept = []
        out = []
        for img in images:
            f = self.backbone(img[None])
            t = F.relu(self.rpn_conv(f))
            objectness = self.rpn_cls(t).permute(0, 2, 3, 1).reshape(-1)
            self.rpn_box(t)
            anchors = self.anchors(f, 4)
            scores, idx = objectness.topk(min(self.proposals, objectness.numel()))
            boxes = anchors[idx[keep_scores(scores)]][: self.rois]          # "NMS"
            self.kept.append(len(boxes))
            x = roi_crops(f, boxes, 4, 7).flatten(1)
            x = F.relu(self.fc2(F.relu(self.fc1(x))))
            result = {"scores": self.cls(x), "boxes": self.box(x)}
            if self.mask:
                m = roi_crops(f, boxes, 4, 14)
                m = F.relu(self.up(F.relu(self.m2(F.relu(self.m1(m))))))
                result["masks"] = self.m_out(m)
            out.append(result)
        return out

    def macs(self, sizes):
        total = 0
        for (h, w), r in zip(sizes, self.kept):
            b, (fh, fw) = Backbone.macs(h, w)
            rpn = conv_macs(32, 32, 3, fh, fw) + conv_macs(32, A, 1, fh, fw) + conv_macs(32, 4 * A, 1, fh, fw)
            head = r * (32 * 49 * 64 + 64 * 64 + 64 * C + 64 * 4 * C)
            mask = r * (2 * conv_macs(32, 32, 3, 14, 14) + 32 * 14 * 14 * 32 * 4
                        + conv_macs(32, C, 1, 28, 28)) if self.mask else 0
            total += b + rpn + head + mask
        return total


class RetinaNet(nn.Module):
    def __init__(self, top=20):
        super().__init__()
        self.backbone, self.anchors = Backbone(), Anchors()
        self.cls_tower = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.box_tower = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.cls, self.box = nn.Conv2d(32, A * C, 3, padding=1), nn.Conv2d(32, 4 * A, 3, padding=1)
        self.top = top

    def forward(self, images):
        out = []
        for img in images:
            f = self.backbone(img[None])
            logits = self.cls(self.cls_tower(f)).sigmoid().reshape(-1)
            deltas = self.box(self.box_tower(f)).reshape(-1, 4)
            anchors = self.anchors(f, 4)
            scores, idx = logits.topk(min(self.top, logits.numel()))
            keep = idx[keep_scores(scores, 0.5)]
            out.append((anchors[keep // C] + deltas[keep // C], scores))
        return out

    @staticmethod
    def macs(sizes):
        total = 0
        for h, w in sizes:
            b, (fh, fw) = Backbone.macs(h, w)
            towers = 4 * conv_macs(32, 32, 3, fh, fw)
            total += b + towers + conv_macs(32, A * C, 3, fh, fw) + conv_macs(32, 4 * A, 3, fh, fw)
        return total


class SSD(nn.Module):
    """Two feature levels, priors kept as a plain tensor attribute built at construction."""

    def __init__(self, image=64):
        super().__init__()
        self.backbone = Backbone()
        self.extra = nn.Conv2d(32, 32, 3, 2, 1)
        self.heads = nn.ModuleList([nn.Conv2d(32, A * (C + 4), 3, padding=1) for _ in range(2)])
        n = (image // 4) ** 2 + (image // 8) ** 2
        self.priors = torch.rand(n * A, 4)

    def forward(self, images):
        batch = torch.stack(images)
        f1 = self.backbone(batch)
        f2 = F.relu(self.extra(f1))
        preds = torch.cat([h(f).permute(0, 2, 3, 1).reshape(len(images), -1, C + 4)
                           for h, f in zip(self.heads, (f1, f2))], 1)
        boxes = preds[..., :4] + self.priors
        scores = preds[..., 4:].softmax(-1).amax(-1)
        return [b[keep_scores(s, 0.3)] for b, s in zip(boxes, scores)]

    @staticmethod
    def macs(n, image=64):
        b, (fh, fw) = Backbone.macs(image, image)
        h2 = (fh + 1) // 2
        return n * (b + conv_macs(32, 32, 3, h2, h2) + conv_macs(32, A * (C + 4), 3, fh, fw)
                    + conv_macs(32, A * (C + 4), 3, h2, h2))


def _images(*sizes):
    torch.manual_seed(0)
    return [torch.randn(3, h, w) for h, w in sizes]


@pytest.mark.parametrize("mask", [False, True], ids=["faster-rcnn", "mask-rcnn"])
def test_two_stage_detectors_with_lists_of_images(mask):
    torch.manual_seed(0)
    model = FasterRCNN(mask=mask).eval()
    sizes = [(64, 48), (40, 56)]
    p = fodlam.profile(model, inputs=(_images(*sizes),))
    assert sum(model.kept) > 0
    assert p.total_macs == model.macs(sizes)
    assert "real forward pass" in p.model["trace"]     # NMS needs the data
    assert not p.unmodeled


def test_retinanet_and_ssd():
    torch.manual_seed(0)
    sizes = [(64, 64), (48, 32)]
    p = fodlam.profile(RetinaNet().eval(), inputs=(_images(*sizes),))
    assert p.total_macs == RetinaNet.macs(sizes)
    assert "real forward pass" in p.model["trace"]
    ssd = SSD().eval()
    p = fodlam.profile(ssd, inputs=(_images((64, 64), (64, 64), (64, 64)),))
    assert p.total_macs == SSD.macs(3)
    assert "depends on its data" in p.model["trace"]


def test_plain_tensor_attributes_trace_on_fake_tensors():
    """A module using a plain tensor attribute (not a buffer) traces on fake tensors, from a
    shape or from real inputs, and the attribute is a constant, not an activation."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.ones(4)
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x * self.k)

    for kwargs in ({"input_shape": (2, 4)}, {"inputs": torch.randn(2, 4)}):
        p = fodlam.profile(M(), **kwargs)
        assert p.total_macs == 2 * 4 * 4 and "fake" in p.model["trace"]
    # the backbone of a detector alone (no data-dependent step) traces on fake tensors
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.anchors = Backbone(), Anchors()

        def forward(self, images):
            return [self.anchors(self.body(img[None]), 4) for img in images]

    p = fodlam.profile(Head(), inputs=([torch.randn(3, 32, 32), torch.randn(3, 16, 16)],))
    assert p.total_macs == Backbone.macs(32, 32)[0] + Backbone.macs(16, 16)[0]
    assert "fake" in p.model["trace"]


def test_a_quantized_model_profiles_twice():
    q = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(256, 256)), {nn.Linear},
                                               dtype=torch.qint8)
    first = fodlam.profile(q, (8, 256))
    second = fodlam.profile(q, (8, 256))
    assert first.total_macs == second.total_macs == 8 * 256 * 256


def test_weight_norm_is_weight_preparation():
    """Wav2Vec2's positional conv: weight norm is computed from parameters only, folded at
    load time like the ONNX export's constant-folded nodes; --strict accepts it."""
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(16, 16, 5, padding=2, groups=4))
    old = nn.utils.weight_norm(nn.Conv1d(16, 16, 5, padding=2))
    for m, groups in ((conv, 4), (old, 1)):
        p = fodlam.profile(m, (1, 16, 100), strict=True)
        assert p.total_macs == 16 // groups * 16 * 5 * 100        # 1-D: 5 taps, 100 outputs
        assert [n.kind for n in p.nodes] == ["conv"]
