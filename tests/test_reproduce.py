"""`python -m mlplab.reproduce`: the presets' sweeps and the results page they write."""

from __future__ import annotations

import re

import pytest

from mlplab.reproduce import main
from tests.conftest import SMALL_RUN

pytestmark = pytest.mark.end_to_end


def test_reproduce_runs_the_presets_and_writes_their_results_page(
    tiny_mnist, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "docs" / "results.md"
    tiny = [override for override in SMALL_RUN if override != "data.val_size=100"]
    arguments = [*tiny, "data.val_size=100", f"data.root={tiny_mnist}"]
    stale = page.parent / "results" / "lab09_1_softmax_test_acc_vs_compute.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\x89PNG from an earlier run")  # one FLOP count: no such plot now
    main([*arguments, "--presets", "lab09_1_softmax,lab09_6_batchnorm", "--seeds", "1,2"])
    assert not stale.exists()
    (sweep,) = [path for path in (tmp_path / "outputs" / "reproduce").iterdir() if path.is_dir()]
    presets = ["lab09_1_softmax", "lab09_6_batchnorm"]  # one sweep, a folder for each preset
    assert sorted(path.name for path in sweep.iterdir() if path.is_dir()) == presets
    text = page.read_text()
    assert text.startswith("# Results\n\nWritten by `python -m mlplab.reproduce` on ")
    assert re.search(
        r"on \d{4}-\d{2}-\d{2}, on .+, \d+ cores; Python .+, torch .+, lightning", text
    )
    sections = text.split("\n## ")[1:]
    assert [section.split("\n")[0] for section in sections] == [
        "lab09_1_softmax",
        "lab09_6_batchnorm",
    ]
    softmax, batchnorm = sections
    assert "The course printed test accuracy 0.8944." in softmax  # the preset's own comment
    assert "| all runs | 2 |" in softmax  # the sweep report: two seeds
    assert (
        "| model.batchnorm=False | 2 |" in batchnorm and "| model.batchnorm=True | 2 |" in batchnorm
    )
    for name in re.findall(r"\]\((results/[^)]+)\)", text):
        assert (page.parent / name).read_bytes()[:4] == b"\x89PNG"
    assert "results/lab09_6_batchnorm_val_acc.png" in batchnorm
