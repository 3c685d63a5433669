"""Column names shared by the result files: the encoder properties correlated with FID, and a run's metric curve."""

from __future__ import annotations

PREDICTORS = ("LP", "LDS", "CDS", "SRSS", "RMSC")  # linear-probe accuracy, then the spatial-structure metrics
SPATIAL = PREDICTORS[1:]
CURVE_COLUMNS = ("Steps", "FID", "sFID", "IS", "Precision", "Recall")  # collect_metrics' per-run CSV
