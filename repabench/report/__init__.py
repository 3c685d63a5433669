"""The report: the correlate stage's statistics and the runs' results, laid out as a self-contained HTML page
(figures inline) and a PDF. Modules: `inputs` (reading the declared input files), `model` (sections, tables,
figures, the correlated setting), `figures`, the sections (`correlation`, `controls`, `results`,
`published_runs`, `accounting`), `assembly` (sections in order), `rendering` (HTML/PDF/PNG) and `stage` (the CLI).

A section whose data are missing (one method only, fewer than three encoders, no IS, no benchmark files, ...)
says so instead of failing; only a missing or malformed required input (table, statistics) is an error.
"""
