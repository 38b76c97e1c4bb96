"""Profiles are parsed into typed sections once, at load: a misspelt key, a value of the
wrong type or out of range, in any table, is a one-line error naming the file, the table
and the key."""

import re

import pytest

from fodlam.accelerator import bundled, load_accelerator
from fodlam.calibration import ACCELERATORS_DIR
from fodlam.errors import ConfigError

#: (profile, TOML table header as written in the file, a key of that table)
SECTIONS = [
    ("tpu-v1", "[architecture]", "clock_mhz"),
    ("tpu-v1", "[power]", "idle_w"),
    ("tpu-v1", "[roofline]", "peak_macs_per_s"),
    ("nvdla-nv-full", "[energy]", "sram_j_per_byte"),
    ("nvdla-nv-full", '[precision."16"]', "mac_j"),
    ("eyeriss-eie-65nm", "[dispatch]", "rule"),
    ("eyeriss-eie-65nm", "[shape_model]", "process_nm"),
    ("eyeriss-eie-65nm", "[shape_model.conv]", "kappa"),
    ("eyeriss-eie-65nm", "[shape_model.fc]", "power_w"),
    ("eyeriss-eie-65nm", "", "technology_scaling"),
]


def _edit(tmp_path, profile, table, key, new_line):
    """The bundled profile with ``key = ...`` in ``table`` replaced by ``new_line``."""
    lines = (ACCELERATORS_DIR / f"{profile}.toml").read_text(encoding="utf-8").splitlines()
    current = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.split("#")[0].strip()
        elif current == table and re.match(rf"{re.escape(key)}\s*=", line):
            lines[i] = new_line
            break
    else:  # pragma: no cover - the table above lists keys that exist
        raise AssertionError(f"{key} not in {table} of {profile}")
    out = tmp_path / f"{profile}-edited.toml"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.mark.parametrize("profile,table,key", SECTIONS)
def test_misspelt_key_in_every_section_is_a_one_line_error(tmp_path, profile, table, key):
    path = _edit(tmp_path, profile, table, key, f"{key}x = 1")
    with pytest.raises(ConfigError) as err:
        load_accelerator(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"{key}x" in msg
    if table:
        assert table.replace('"', "").strip("[]").split(".")[0] in msg.replace('"', "")


@pytest.mark.parametrize("table,key,value,why", [
    ("[architecture]", "clock_mhz", '"fast"', "finite number"),
    ("[architecture]", "clock_mhz", "0", "positive"),
    ("[architecture]", "array_k", "0.5", "whole number"),
    ("[architecture]", "dram_bytes_per_s", "-1e9", "positive"),
    ("[architecture]", "activations", '"sometimes"', "streamed"),
    ("[architecture]", "precisions", "[8, 0]", "positive integers"),
    ("[power]", "busy_w", "10", "below idle_w"),
    ("[power]", "idle_w", "nan", "finite number"),
])
def test_wrong_types_and_ranges_are_refused_at_load(tmp_path, table, key, value, why):
    path = _edit(tmp_path, "tpu-v1", table, key, f"{key} = {value}")
    with pytest.raises(ConfigError, match=why) as err:
        load_accelerator(str(path))
    assert str(path) in str(err.value) and key in str(err.value)


def test_missing_required_field_and_unknown_table(tmp_path):
    path = _edit(tmp_path, "tpu-v1", "[power]", "busy_w", "# busy_w removed")
    with pytest.raises(ConfigError, match=r"\[power\] lacks busy_w"):
        load_accelerator(str(path))
    text = (ACCELERATORS_DIR / "tpu-v1.toml").read_text(encoding="utf-8") + "\n[archtecture]\nx = 1\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="archtecture"):
        load_accelerator(str(path))


@pytest.mark.parametrize("name", bundled())
def test_bundled_profiles_are_typed(name):
    acc = load_accelerator(name)
    assert acc.architecture is not None
    if acc.cost_model == "fodlam-roofline" and acc.array is not None:   # a declared chip
        assert acc.array.unroll and acc.architecture.clock_mhz > 0 and (acc.power or acc.energy)
    elif acc.cost_model == "fodlam-roofline":
        assert acc.architecture.array_k > 0 and (acc.power or acc.energy)
    else:
        assert acc.shape_model.conv.kappa > 0 and acc.shape_model.fc.power_w > 0


def test_node_out_of_range_is_refused():
    acc = load_accelerator("tpu-v1")
    for node in (-7, 0, 1e-300, 1e9, float("nan")):
        with pytest.raises(ConfigError, match="out of range"):
            acc.at_node(node)


def test_sweepable_fields_come_from_the_typed_sections():
    from fodlam.sweeps import apply_overrides, sweepable_fields

    acc = load_accelerator("tpu-v1")
    fields = sweepable_fields(acc)
    assert fields["architecture.array_k"] == 256 and fields["power.busy_w"] == 40
    assert "architecture.activations" not in fields and "architecture.precisions" not in fields
    small = apply_overrides(acc, (("architecture.array_k", 64),))
    assert small.architecture.array_k == 64 and acc.architecture.array_k == 256
    with pytest.raises(ConfigError, match="array_k"):
        apply_overrides(acc, (("architecture.array_k", 0),))
    with pytest.raises(ConfigError, match="whole number"):
        apply_overrides(acc, (("architecture.array_k", 0.5),))
