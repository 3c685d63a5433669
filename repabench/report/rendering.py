"""Rendering the report: HTML (Jinja2, figures inline as PNG), PDF (matplotlib PdfPages: figures plus table and
text pages) and the figures as PNG files with an index."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from repabench.report.figures import pyplot
from repabench.report.model import Figure, Section, Table


PAGE = (11.69, 8.27)  # A4 landscape, inches
TEXT_LINES_PER_PAGE = 46
TEXT_WIDTH = 125
CELL_CHARS = 72


def render_png(figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    figure.png = buffer.getvalue()


def render_html(path: Path, context: Mapping[str, Any]) -> None:
    from importlib.resources import files

    import jinja2

    template_text = files("repabench").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.from_string(template_text).render(**context)
    from repabench.atomic import write_text

    write_text(path, html)


def _wrap(lines: Iterable[str], width: int = TEXT_WIDTH) -> list[str]:
    import textwrap

    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, width, subsequent_indent="    ", replace_whitespace=False,
                             drop_whitespace=False) or [""]
    return out


def text_pages(title: str, lines: Sequence[str], *, mono: bool = False) -> Iterator[Any]:
    """Pages of wrapped text; the title repeats on continuation pages."""
    plt = pyplot()
    wrapped = _wrap(lines, TEXT_WIDTH if not mono else 140)
    chunks = [wrapped[i:i + TEXT_LINES_PER_PAGE] for i in range(0, max(len(wrapped), 1), TEXT_LINES_PER_PAGE)]
    for k, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        heading = title if k == 0 else f"{title} (continued)"
        fig.text(0.05, 0.95, heading, fontsize=14, weight="bold", va="top")
        fig.text(0.05, 0.89, "\n".join(chunk), fontsize=8.5 if mono else 10, va="top",
                 family="monospace" if mono else "sans-serif", linespacing=1.35)
        yield fig


def table_pages(title: str, table: Table) -> Iterator[Any]:
    """A table across as many landscape pages as its rows need (header repeated)."""
    plt = pyplot()
    rows = [[cell if len(cell) <= CELL_CHARS else cell[: CELL_CHARS - 1] + "…" for cell in row] for row in table.rows]
    rows = rows or [["(no rows)"] + [""] * (len(table.columns) - 1)]
    widths = np.array([max([len(str(c)) for c in [table.columns[j]] + [r[j] for r in rows]] + [3])
                       for j in range(len(table.columns))], float)
    widths = np.minimum(widths, CELL_CHARS) + 2  # cell padding
    total_chars = widths.sum()
    font = float(np.clip(1300 / total_chars, 5.5, 10))
    # one character of the table font (bold headers included) is about 0.64 em wide
    scale = min(0.92, total_chars * font * 0.64 / 72 / PAGE[0])
    row_height = font * 2.0 / 72 / PAGE[1]
    per_page = max(5, int(0.76 / row_height) - 1)
    chunks = [rows[i:i + per_page] for i in range(0, len(rows), per_page)]
    for k, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        suffix = f" (part {k + 1} of {len(chunks)})" if len(chunks) > 1 else ""
        fig.text(0.04, 0.95, f"{title}{suffix}", fontsize=13, weight="bold", va="top")
        fig.text(0.04, 0.905, table.title, fontsize=11, va="top")
        height = row_height * (len(chunk) + 1)
        ax = fig.add_axes([0.04, 0.86 - height, scale, height])
        ax.axis("off")
        mpl_table = ax.table(cellText=chunk, colLabels=table.columns, bbox=[0, 0, 1, 1], cellLoc="right",
                             colLoc="center", colWidths=list(widths / total_chars))
        mpl_table.auto_set_font_size(False)
        mpl_table.set_fontsize(font)
        for (r, c), cell in mpl_table.get_celld().items():
            cell.set_linewidth(0.4)
            if r == 0:
                cell.set_facecolor("#e8e8e8")
                cell.set_text_props(weight="bold")
            if c == 0 or len(cell.get_text().get_text()) > 30:
                cell.set_text_props(ha="left")
                cell.PAD = 0.02
        if table.note and k == len(chunks) - 1:
            fig.text(0.04, 0.86 - height - 0.02, "\n".join(_wrap([table.note], 150)), fontsize=9, va="top",
                     color="0.3")
        yield fig


def pdf_pages(context: Mapping[str, Any], sections: Sequence[Section]) -> Iterator[tuple[Any, bool]]:
    """(matplotlib figure, is_report_figure) for every PDF page, in order; text and table pages are made
    one at a time so that the caller can close each after saving it."""
    summary = [f"Study: {context['name']}", f"Correlated setting: {context['setting']}",
               f"Encoders: {context['n_encoders']}, methods: {context['n_methods']}, code: {context['code_sha']}", ""]
    summary += context["answer"] + [""]
    for section in sections:
        if section.paragraphs or section.notes:
            summary.append(f"{section.title}:")
            summary += [f"  {p}" for p in section.paragraphs] + [f"  Note: {n}" for n in section.notes]
    yield from ((p, False) for p in text_pages(context["title"], summary))
    for section in sections:
        yield from ((f.figure, True) for f in section.figures)
        for table in section.tables:
            yield from ((p, False) for p in table_pages(section.title, table))
        for title, text in section.blocks:
            yield from ((p, False) for p in text_pages(f"{section.title}: {title}", text.splitlines(), mono=True))


def render_pdf(path: Path, context: Mapping[str, Any], sections: Sequence[Section]) -> int:
    from matplotlib.backends.backend_pdf import PdfPages

    from repabench.atomic import atomic_path

    plt = pyplot()
    count = 0
    with atomic_path(path) as tmp:
        metadata = {"Title": f"{context['title']} ({context['name']})", "Creator": "repabench report",
                    "CreationDate": None}
        with PdfPages(tmp, metadata=metadata) as pdf:
            for fig, is_report_figure in pdf_pages(context, sections):
                pdf.savefig(fig, bbox_inches="tight" if is_report_figure else None)
                count += 1
                if not is_report_figure:
                    plt.close(fig)
    return count


def write_figures(directory: Path, sections: Sequence[Section]) -> None:
    from repabench.atomic import atomic_path

    with atomic_path(directory, directory=True) as tmp:
        index = []
        for section in sections:
            for figure in section.figures:
                (tmp / f"{figure.name}.png").write_bytes(figure.png)
                index.append({"file": f"{figure.name}.png", "title": figure.title, "caption": figure.caption,
                              "section": section.title})
        (tmp / "figures.json").write_text(json.dumps(index, indent=2) + "\n")


