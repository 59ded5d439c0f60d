"""The two renderers of the report's blocks: markdown (report.md) and one self-contained HTML page (report.html)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from rlino.report.document import Block, Bullets, Code, Heading, Image, Para, Table, Verdicts


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text, so model output cannot close it."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def to_markdown(blocks: list[Block]) -> str:
    """Render the blocks as GitHub-flavoured markdown (plots linked relatively)."""
    parts = []
    for block in blocks:
        match block:
            case Heading(level, text):
                parts.append(f"{'#' * level} {text}")
            case Para(text):
                parts.append(text)
            case Bullets(items):
                parts.append("\n".join(f"- {item}" for item in items))
            case Verdicts(items):
                parts.append("\n".join(f"- **{verdict}**: {text}" for verdict, text in items))
            case Table(header, rows):
                lines = [header, ["---"] * len(header), *rows]
                parts.append("\n".join("| " + " | ".join(_md_cell(c) for c in line) + " |" for line in lines))
            case Image(path, alt):
                parts.append(f"![{alt}]({path})")
            case Code(text):
                fence = _md_fence(text)
                parts.append(f"{fence}\n{text.rstrip()}\n{fence}")
    return "\n\n".join(parts) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .95em; }
th, td { border: 1px solid #ccc; padding: .35em .7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
ul.verdicts { list-style: none; padding-left: 0; }
ul.verdicts li { margin: .4em 0; }
.v { display: inline-block; min-width: 8.5em; padding: .05em .5em; margin-right: .6em; border-radius: .3em;
     font-weight: 600; font-size: .9em; text-align: center; background: #eee; }
.v-holds { background: #d8f0dc; } .v-does-not-hold { background: #f8d7d3; } .v-inconclusive { background: #fbefc5; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: .8em; white-space: pre-wrap;
      word-break: break-word; font-size: .88em; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


NUMBER = re.compile(r"^[−+-]?\d[\d.,]*%?( \[[^\]]*\])?( \(.*\))?$|^—$|^(\d+ min )?\d+(\.\d+)? s$")
"""A cell that is a number (with its interval or a note in brackets): right-aligned; text cells read left."""


def _td(text: str) -> str:
    return f'<td class="num">{html.escape(text)}</td>' if NUMBER.match(text) else f"<td>{html.escape(text)}</td>"


def _html_block(block: Block, folder: Path) -> str:
    e = html.escape
    match block:
        case Heading(level, text):
            return f"<h{level}>{e(text)}</h{level}>"
        case Para(text):
            return f"<p>{e(text)}</p>"
        case Bullets(items):
            return "<ul>\n" + "\n".join(f"<li>{e(item)}</li>" for item in items) + "\n</ul>"
        case Table(header, rows):
            head = "".join(f"<th>{e(c)}</th>" for c in header)
            body = "\n".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
            return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
        case Verdicts(items):
            return '<ul class="verdicts">\n' + "\n".join(
                f'<li><span class="v v-{e(verdict.replace(" ", "-"))}">{e(verdict)}</span>{e(text)}</li>'
                for verdict, text in items) + "\n</ul>"
        case Image(path, alt):
            return f'<img alt="{e(alt)}" src="{_data_uri(folder / path)}">'
        case Code(text):
            return f"<pre><code>{e(text.rstrip())}</code></pre>"
    raise TypeError(f"not a report block: {block!r}")


def to_html(blocks: list[Block], folder: Path) -> str:
    """Render the blocks as one self-contained HTML page; every text is escaped (model output is untrusted)."""
    e = html.escape
    parts = [_html_block(block, folder) for block in blocks]
    title = next((b.text for b in blocks if isinstance(b, Heading)), "rlino report")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
