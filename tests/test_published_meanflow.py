"""Table 2b (MeanFlow with REPA / iREPA) as data, and its table in the report of a MeanFlow preset."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from repabench import published
from repabench.report.model import Setting
from repabench.report.results import meanflow_table

ENCODERS = ("webssl-vit-dino1b_full2b_224", "dinov3-vit-b16")


def test_a_sampler_finds_its_column_of_table_2b():
    # PAGE Table 2b: DINOv3-B iREPA, CFG 2.0, 4 NFE is IS 124.5 / FID 11.1; WebSSL-1B REPA, no CFG, 1 NFE 24.1 / 58.7
    assert published.meanflow_result("dinov3-vit-b16", "conv", "zscore", 4, 2.0) == (124.5, 11.1)
    assert published.meanflow_result("webssl-vit-dino1b_full2b_224", "mlp", "none", 1, 1.0) == (24.1, 58.7)
    assert published.meanflow_result("dinov3-vit-b16", "conv", "zscore", 2, 1.0) is None  # no 2-NFE column
    assert published.meanflow_result("dinov2-vit-b", "mlp", "none", 1, 1.0) is None


def test_the_table_says_what_the_paper_claims():
    """iREPA has the lower FID and higher IS in every cell; more NFE and CFG lower the FID."""
    for encoder in ENCODERS:
        repa, irepa = published.MEANFLOW[(encoder, "mlp", "none")], published.MEANFLOW[(encoder, "conv", "zscore")]
        assert all(i[1] < r[1] and i[0] > r[0] for r, i in zip(repa, irepa))
        for cells in (repa, irepa):
            by = dict(zip(published.MEANFLOW_COLUMNS, cells))
            assert by[(4, 1.0)][1] < by[(1, 1.0)][1] and by[(1, 2.0)][1] < by[(1, 1.0)][1]


def test_the_report_of_a_meanflow_run_puts_table_2b_beside_ours():
    params = {"samplers": {"mf1_cfg2": {"mode": "meanflow", "steps": 1, "cfg_scale": 2.0}},
              "methods": {"irepa": {"label": "iREPA", "projector": "conv", "spatial_norm": "zscore"}}}
    inputs = SimpleNamespace(params=params)
    setting = Setting(model="MF-B/2", method="irepa", step=100_000, sampler="mf1_cfg2")
    fids = {("dinov3-vit-b16", "irepa"): pd.Series({"FID": 18.0, "IS": 90.0})}
    [table] = meanflow_table(inputs, setting, ENCODERS, ["irepa"], fids)
    cells = {row[0]: row for row in table.rows}
    assert cells["dinov3-vit-b16"][2:] == ["17.3", "18.00", "98.9", "90.0"]
    assert cells["webssl-vit-dino1b_full2b_224"][2] == "20.7"
    setting_4 = Setting(model="MF-B/2", method="irepa", step=100_000, sampler="none")
    assert meanflow_table(inputs, setting_4, ENCODERS, ["irepa"], fids) == []
