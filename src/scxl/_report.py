"""A self-contained HTML report of an ``scxl run`` (figures embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{border-bottom:2px solid #0072B2;padding-bottom:.2em}h2{color:#0072B2;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f0f4f8}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:.9em}.grid{display:flex;flex-wrap:wrap;gap:1.5em}.grid>div{flex:1 1 300px}
code{background:#f4f4f4;padding:0 .2em}
"""


class Report:
    """Collects sections and writes one HTML file with the figures embedded."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        """Add a section heading."""
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, *, note: bool = False) -> None:
        """Add a paragraph."""
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{text}</p>")

    def table(self, df: pd.DataFrame, *, floatfmt: str = "{:.3f}", index: bool = True) -> None:
        """Add a table."""
        self.parts.append(df.to_html(float_format=floatfmt.format, index=index, border=0, escape=True))

    def figure(self, fig: Any, name: str, folder: Path, caption: str = "") -> None:
        """Save ``fig`` as PNG and SVG into ``folder`` and embed the PNG."""
        import matplotlib.pyplot as plt

        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode()
        cap = f'<p class="note">{caption}</p>' if caption else ""
        self.parts.append(f'<div><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"/>{cap}</div>')

    def params(self, params: dict[str, Any]) -> None:
        """Add a JSON block of parameters."""
        self.parts.append(f"<pre>{html.escape(json.dumps(params, indent=2, default=str))}</pre>")

    def write(self, path: Path) -> Path:
        """Write the HTML file."""
        body = "\n".join(self.parts)
        path.write_text(
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>{body}</body></html>"
        )
        return path
