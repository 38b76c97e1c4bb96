"""The torch importer against the ONNX importer, op family by op family (issue 22): every
module below exports to ONNX, and both sides cost it fully (no unmodeled node) with the
same MACs."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn = torch.nn

import fodlam  # noqa: E402


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class MatMul(nn.Module):
    def forward(self, x):
        return x @ x.transpose(-1, -2)


class Einsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(32, 16))

    def forward(self, x):
        return torch.einsum("btk,kn->btn", x, self.w)


CASES = {
    "conv2d": (lambda: nn.Conv2d(8, 16, 3, padding=1), (1, 8, 16, 16)),
    "conv2d-strided-dilated": (lambda: nn.Conv2d(8, 16, 3, stride=2, dilation=2, padding=2), (1, 8, 17, 17)),
    "conv2d-depthwise": (lambda: nn.Conv2d(16, 16, 3, padding=1, groups=16), (1, 16, 12, 12)),
    "conv1d": (lambda: nn.Conv1d(8, 8, 5, padding=2), (1, 8, 40)),
    "conv3d": (lambda: nn.Conv3d(4, 8, 3, padding=1), (1, 4, 6, 8, 8)),
    "conv-transpose2d": (lambda: nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), (1, 8, 8, 8)),
    "weight-norm-conv1d": (lambda: nn.utils.parametrizations.weight_norm(nn.Conv1d(8, 8, 5, padding=2)), (1, 8, 40)),
    "linear": (lambda: nn.Linear(32, 64), (3, 32)),
    "linear-3d": (lambda: nn.Linear(32, 64), (2, 5, 32)),
    "bilinear-matmul": (MatMul, (2, 6, 32)),
    "einsum": (Einsum, (2, 6, 32)),
    "lstm": (lambda: nn.LSTM(16, 32, batch_first=True), (2, 7, 16)),
    "gru-bidirectional": (lambda: nn.GRU(16, 24, bidirectional=True, batch_first=True), (2, 7, 16)),
    "attention": (Attn, (2, 10, 32)),
    "pooling": (lambda: nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)), (1, 4, 16, 16)),
    "norms": (lambda: nn.Sequential(nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8), nn.GroupNorm(2, 8),
                                    nn.InstanceNorm2d(8)), (1, 4, 8, 8)),
    "layernorm-gelu": (lambda: nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.GELU()), (2, 16)),
    "activations": (lambda: nn.Sequential(nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.Hardswish(),
                                          nn.SiLU(), nn.LeakyReLU(), nn.Softmax(-1)), (2, 16)),
    "embedding": (lambda: nn.Sequential(nn.Embedding(100, 16), nn.Linear(16, 8)), (2, 5)),
    "pixel-shuffle-upsample": (lambda: nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.PixelShuffle(2),
                                                     nn.Upsample(scale_factor=2)), (1, 4, 8, 8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_and_onnx_cost_the_same_macs(case, tmp_path):
    make, shape = CASES[case]
    torch.manual_seed(0)
    model = make().eval()
    dtype = torch.long if case == "embedding" else torch.float32
    x = torch.randint(0, 100, shape) if dtype == torch.long else torch.randn(shape)
    path = tmp_path / f"{case}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False)
    pt = fodlam.profile(model, shape, dtype=dtype, strict=True)
    po = fodlam.profile_onnx(path, strict=True)
    assert pt.total_macs == po.total_macs > 0 or case in ("pooling", "activations")
    assert not pt.unmodeled and not po.unmodeled
