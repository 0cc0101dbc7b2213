"""bf16-mixed on a CPU without bf16 matrix units is warned about: its matmuls take a slow path there (16x an epoch)."""

import warnings

import pytest

from negseq.training import cli
from negseq.training.cli import NegSeqCLI, cpu_has_bf16_units

CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 {extra}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(("extra", "expected"), [("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("avx512f fma", False), ("", False)])
def test_bf16_units_are_read_from_the_cpu_flags(tmp_path, monkeypatch, extra, expected):
    monkeypatch.setattr(cli.platform, "machine", lambda: "x86_64")
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    assert cpu_has_bf16_units(path) is expected


def test_without_cpu_flags_to_read_nothing_is_assumed(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.platform, "machine", lambda: "x86_64")
    assert cpu_has_bf16_units(tmp_path / "absent") is True
    monkeypatch.setattr(cli.platform, "machine", lambda: "arm64")
    assert cpu_has_bf16_units(tmp_path / "absent") is True


@pytest.mark.parametrize(("precision", "has_units", "warns"), [("bf16-mixed", False, True), ("bf16-mixed", True, False), ("32-true", False, False)])
def test_the_cli_warns_of_slow_bf16_only_where_it_is_slow(tmp_path, tiny_log, monkeypatch, precision, has_units, warns):
    monkeypatch.setattr(cli, "cpu_has_bf16_units", lambda: has_units)
    args = ["--data.path", tiny_log, "--trainer.precision", precision, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NegSeqCLI(run=False, args=args)
    slow = [w for w in caught if "without bf16 matrix units" in str(w.message)]
    assert len(slow) == int(warns)
