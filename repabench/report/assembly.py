"""The report as a whole: its sections in order and the context of the HTML template, then written out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repabench.provenance import code_version
from repabench.report.accounting import compute_section, provenance_section
from repabench.report.controls import controls_section, noise_section, verdict_lines
from repabench.report.correlation import correlation_sentences, correlation_section, summary_lines
from repabench.report.figures import encoder_colors, pyplot
from repabench.report.inputs import encoder_order, method_order
from repabench.report.model import Inputs, Section, Setting
from repabench.report.published_runs import published_runs_section
from repabench.report.rendering import render_html, render_pdf, render_png, write_figures
from repabench.report.results import (dynamics_section, encoder_section, method_section, published_section,
                                      spatialnorm_section)
from repabench.stats import ReportConfig


def build_sections(inputs: Inputs) -> tuple[dict[str, Any], list[Section]]:
    setting = Setting.from_stats(inputs.stats)
    encoders = encoder_order(inputs.params, inputs.table, inputs.curves)
    methods = method_order(inputs.params, inputs.table, inputs.curves)
    if setting.method not in methods:
        raise SystemExit(f"report.method {setting.method!r} is not among the methods of the inputs ({methods}); "
                         "set report.method to a trained method")
    colors = encoder_colors(encoders)
    correlation, corr = correlation_section(inputs, setting, colors)
    sections = [
        correlation,
        noise_section(inputs, setting, methods),
        controls_section(inputs, setting, methods),
        encoder_section(inputs, setting, encoders, methods),
        method_section(inputs, setting, encoders, methods),
        dynamics_section(inputs, setting, encoders, methods, colors),
        published_section(inputs, setting, encoders, methods, corr),
        provenance_section(inputs, setting),
        compute_section(inputs),
    ]
    spatialnorm = spatialnorm_section(inputs, encoders)
    if spatialnorm is not None:
        sections.insert(2, spatialnorm)
    if inputs.published_numbers:
        sections.insert(7, published_runs_section(inputs, setting, encoders, methods, corr))
    report = inputs.params.get("report") or {}
    sha = code_version().get("git_sha")
    context = {
        "title": ReportConfig.from_config(report).title,
        "name": inputs.params.get("name", "study"),
        "setting": setting.describe(),
        "n_encoders": len(encoders),
        "n_methods": len(methods),
        "code_sha": sha[:12] if sha else "unknown",
        "answer": summary_lines(verdict_lines(inputs.stats), correlation_sentences(corr)),
        "sections": sections,
    }
    return context, sections


def write_report(inputs: Inputs, html: Path, pdf: Path, figures_dir: Path) -> tuple[int, int]:
    """Render the report of `inputs` to HTML, PDF and PNG files; returns (PDF pages, figures)."""
    context, sections = build_sections(inputs)
    for section in sections:
        for figure in section.figures:
            render_png(figure)
    write_figures(figures_dir, sections)
    render_html(html, context)
    pages = render_pdf(pdf, context, sections)
    plt = pyplot()
    for section in sections:
        for figure in section.figures:
            plt.close(figure.figure)
    return pages, sum(len(s.figures) for s in sections)
