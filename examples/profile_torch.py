"""Profile a PyTorch model and print its most expensive layers.

    python examples/profile_torch.py [resnet50|mobilenet_v2|vit_tiny|gpt2_small|lstm_lm]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fodlam  # noqa: E402
from examples import zoo  # noqa: E402
from fodlam.units import format_count, format_si  # noqa: E402

SHAPES = {"resnet50": (1, 3, 224, 224), "mobilenet_v2": (1, 3, 224, 224),
          "vit_tiny": (1, 3, 224, 224), "gpt2_small": (1, 128), "lstm_lm": (35, 1)}


def main(name: str = "resnet50") -> None:
    model = getattr(zoo, name)()
    prof = fodlam.profile(model, SHAPES[name])
    print(f"{name}: {format_count(prof.total_macs)} MACs, {format_si(prof.total_energy_j, 'J')}, "
          f"{format_si(prof.total_latency_s, 's')} on {prof.accelerator['name']}")
    lo, hi = prof.to_dict()["total"].get("energy_j_interval", [None, None])
    if lo is not None:
        print(f"energy range seen in calibration: {format_si(lo, 'J')} .. {format_si(hi, 'J')}")
    print("\ntop 10 layers by energy:")
    for node in prof.top(10):
        print(f"  {node.name:32s} {node.kind:7s} {format_count(node.macs):>8s} MACs "
              f"{format_si(node.energy_j, 'J'):>9s} {format_si(node.latency_s, 's'):>9s}")
    print("\nby module (depth 1):")
    for module, row in prof.by_module(depth=1).items():
        print(f"  {module:16s} {format_si(row['energy_j'], 'J'):>9s}")


if __name__ == "__main__":
    main(*sys.argv[1:])
