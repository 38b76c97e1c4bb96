#!/usr/bin/env bash
# Export a real-sized model (ResNet-50, 25.6 M parameters, plain PyTorch) to ONNX with a
# dynamic batch, profile it with fodlam-onnx, annotate it for Netron, and gate a budget.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/fodlam-example}
mkdir -p "$out"
python - "$out" <<'PY'
import sys, torch
sys.path.insert(0, ".")
from examples import zoo
out = sys.argv[1]
torch.onnx.export(zoo.resnet50().eval(), (torch.randn(1, 3, 224, 224),), f"{out}/resnet50.onnx",
                  dynamo=False, input_names=["image"], dynamic_axes={"image": {0: "batch"}})
print(f"exported {out}/resnet50.onnx")
PY
fodlam-onnx "$out/resnet50.onnx" --batch 1 --format table --top 8
fodlam-onnx "$out/resnet50.onnx" --batch 1 --format json -o "$out/resnet50.json" \
    --annotate "$out/resnet50.annotated.onnx"
echo "profile: $out/resnet50.json; open $out/resnet50.annotated.onnx in Netron"
fodlam-onnx "$out/resnet50.onnx" --batch 1 --format json -o /dev/null --max-energy "200 mJ" \
    && echo "within the 200 mJ budget"
