"""Shared fixtures: the committed tiny bundles and the PyTorch models they were exported from (rebuilt from
(layout, seed), which is cheap and deterministic)."""

from __future__ import annotations

import functools
import json
import re
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "test" / "fixtures" / "bundles"
COMMITTED = {"tiny-7b": ("7b", 1), "tiny-13b": ("13b", 2)}

torch.set_num_threads(2)


def layout_seed_of(bundle: Path) -> tuple[str, int]:
    m = json.loads((bundle / "lisa.manifest.json").read_text())
    found = re.fullmatch(r"tiny-(7b|13b)-seed(\d+)", m["source"]["checkpoint"])
    assert found, m["source"]
    return found.group(1), int(found.group(2))


@functools.cache
def tiny_model(layout: str, seed: int):
    """(lisa, tokenizer, tokens, checkpoint_dir, clip_dir) for a tiny fixture; the folders live for the session."""
    from lisa_export.export import token_spec
    from lisa_export.model import load_lisa
    from lisa_export.tiny import build_tiny_checkpoint
    from lisa_export.tokenizer import load_slow_tokenizer

    root = Path(tempfile.mkdtemp(prefix=f"lisa-test-{layout}-{seed}-"))
    ckpt, clip = build_tiny_checkpoint(layout, seed, root)
    tok = load_slow_tokenizer(ckpt)
    lisa, _ = load_lisa(ckpt, clip, layout=layout, tokenizer_len=len(tok))
    return lisa, tok, token_spec(tok, layout), ckpt, clip


@pytest.fixture(scope="session")
def fresh_bundles(tmp_path_factory):
    """Seed 7, both layouts, exported now (nothing tuned to the committed shapes)."""
    from lisa_export.tiny import export_tiny

    root = tmp_path_factory.mktemp("fresh")
    return {layout: export_tiny(layout, 7, root / f"tiny-{layout}-7", log=lambda m: None) for layout in ("7b", "13b")}


FIGURES: list[str] = []


def report(msg: str) -> None:
    """Figures the README quotes: printed at the end of the run, even under -q."""
    FIGURES.append(msg)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("measured figures")
        for f in FIGURES:
            terminalreporter.write_line(f)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: re-exports the committed fixtures (about a minute)")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::UserWarning")
