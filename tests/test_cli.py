"""The `rsgen` command skeleton: help, info, metadata, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rsgen.cli import build_parser, main


def test_help_lists_every_subcommand(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "metadata" in out


def test_every_option_has_help() -> None:
    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, (
                    f"rsgen {name}: option {action.option_strings or action.dest} has no help text"
                )


def test_info(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "device" in out and "text encoder" in out


def test_metadata_json(fake_geotiff, capsys) -> None:  # type: ignore[no-untyped-def]
    path = fake_geotiff("m_4709963_se_14_1_20120731.tif")
    assert main(["metadata", "--json", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["metadata"]["date"] == "2012-07-31" and row["sources"]["date"] == "NAIP file name"


def test_bad_input_is_one_line_and_nonzero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"\x00" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "rsgen", "metadata", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "corrupt.tif" in proc.stderr
    assert "Traceback" not in proc.stderr
