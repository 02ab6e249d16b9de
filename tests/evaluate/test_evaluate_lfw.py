"""The LFW verification protocol: pair parsing, folds and threshold selection."""

from __future__ import annotations

import numpy as np
import pytest

from photosearch.evaluate.lfw import (
    Pair,
    best_threshold,
    fold_ids,
    read_pairs,
    verification_report,
)


def test_reads_devtrain_pairs(shared_data):
    pairs = read_pairs(shared_data / "lfw-devtrain" / "pairsDevTrain.txt")
    assert len(pairs) == 2200
    assert sum(p.same for p in pairs) == 1100
    assert pairs[0] == Pair(
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg", True
    )
    for pair in pairs[:50] + pairs[-50:]:
        assert (shared_data / "lfw-devtrain" / pair.first).is_file()


def test_bad_pairs_line_names_file_and_line(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\nAaron 1 2\nnonsense\n")
    with pytest.raises(ValueError, match=r"pairs.txt:3"):
        read_pairs(bad)


def test_folds_are_balanced():
    pairs = [Pair("a", "b", i < 100) for i in range(200)]
    folds = fold_ids(pairs)
    for fold in range(10):
        members = [pairs[i].same for i in np.flatnonzero(folds == fold)]
        assert members.count(True) == members.count(False) == 10


def test_best_threshold_separates_separable_data():
    distances = np.array([0.1, 0.2, 0.3, 0.7, 0.8, np.inf])
    same = np.array([True, True, True, False, False, False])
    threshold = best_threshold(distances, same)
    assert 0.3 < threshold < 0.7


def test_report_counts_missing_faces_as_errors_for_matched_pairs():
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 100)
    distances = np.where(same, rng.uniform(0.2, 0.5, 200), rng.uniform(0.7, 1.0, 200))
    distances[0] = np.inf  # a matched pair whose face was not found
    folds = fold_ids([Pair("a", "b", bool(s)) for s in same])
    report = verification_report(distances, same, folds, no_face=1)
    assert report.accuracy_default == pytest.approx(199 / 200)
    assert report.accuracy_10fold == pytest.approx(199 / 200)
    assert 0.5 < report.threshold_10fold_mean < 0.7
