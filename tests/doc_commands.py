"""The `python -m heritage_seg.…` commands of the README and the docs, read as a reader copies them.

A command is a line of a code block (indented or fenced; `\\` continues it on the next line) or an inline code span
that starts with `python -m heritage_seg.`. A command that cannot run on generated data on a CPU says what it needs,
where a reader sees it too:

- in a code block, a trailing comment (two spaces before the `#`):
  `python -m heritage_seg.train -m … hydra/launcher=submitit_slurm  # needs: slurm, gpu`
- after an inline code span, an HTML comment (invisible on the page):
  `` `python -m heritage_seg.download …`<!-- needs: artefact --> ``

Marks: `artefact` (the real ARTeFACT files, or the internet to fetch them), `gpu` (CUDA), `slurm` (a SLURM
cluster with what the command asks of it). A fenced block with a title (```` ```yaml title="my_conf/labels/x.yaml" ````)
is a file the page asks the reader to write; the runner writes it before the page's commands run. A fenced
```` ```python ```` block without a title that imports heritage_seg is a snippet a reader runs (in a notebook, say):
the runner runs it whole, as one command.
Used by tests/test_doc_commands.py; how each command is shrunk to tiny size is written there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "python -m heritage_seg."
MARKS = frozenset({"artefact", "gpu", "slurm"})
GENERATED = {REPO / "docs" / "reference" / "options.md"}  # the configs' help text, written by tools/config_reference.py
_STARTS = re.compile(r"python -m heritage_seg\.[A-Za-z_]")  # a module named: `python -m heritage_seg.…` is prose
_INLINE = re.compile(r"`(python -m heritage_seg\.[A-Za-z_][^`]*)`(\s*<!--(.*?)-->)?", flags=re.S)
_NEEDS = re.compile(r"needs:\s*([\w ,]+)")
_FENCE = re.compile(r"^(\s*)(```+(?=[^`]*$)|~~~+)(.*)$")  # a backtick fence's info holds no backtick (CommonMark)
_TITLE = re.compile(r'title="([^"]+)"')
_IMPORTS = re.compile(r"^\s*(from heritage_seg\b|import heritage_seg\b)", flags=re.M)


@dataclass(frozen=True)
class DocCommand:
    source: str  # file:line, for messages
    text: str  # the command as written, continuation lines joined, without its comment (a snippet: its code)
    needs: frozenset[str] = field(default_factory=frozenset)
    python: bool = False  # a Python snippet, not a `python -m` command


@dataclass(frozen=True)
class DocFile:
    path: Path
    text: str  # the file's content


def pages() -> list[Path]:
    """The README and every page of the docs, the generated option reference aside."""
    docs = sorted(p for p in (REPO / "docs").rglob("*.md") if p not in GENERATED)
    return [REPO / "README.md", *docs]


def _needs(comment: str, where: str) -> frozenset[str]:
    match = _NEEDS.search(comment)
    if not match:
        return frozenset()
    marks = frozenset(m.strip() for m in match.group(1).split(",") if m.strip())
    unknown = marks - MARKS
    if unknown:
        raise ValueError(f"{where}: unknown mark(s) {sorted(unknown)} in 'needs:'; known: {sorted(MARKS)}")
    return marks


def _blocks(lines: list[str]) -> list[tuple[str, int, list[str], str]]:
    """(kind, first line number, lines, info) for each code block ('fenced' / 'indented') and each paragraph
    ('text') of a Markdown page."""
    out: list[tuple[str, int, list[str], str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(fence.group(2)):
                end += 1
            indent = len(fence.group(1))
            out.append(("fenced", i + 2, [ln[indent:] for ln in lines[i + 1 : end]], fence.group(3)))
            i = end + 1
            continue
        previous_blank = i == 0 or not lines[i - 1].strip()
        if line.startswith("    ") and line.strip() and previous_blank:
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                i += 1
            body = [ln[4:] for ln in lines[start:i]]
            while body and not body[-1].strip():
                body.pop()
            out.append(("indented", start + 1, body, ""))
            continue
        if line.strip():
            start = i
            while i < len(lines) and lines[i].strip() and not _FENCE.match(lines[i]):
                i += 1
            out.append(("text", start + 1, lines[start:i], ""))
            continue
        i += 1
    return out


def _code_commands(body: list[str], first: int, name: str) -> list[DocCommand]:
    commands = []
    i = 0
    while i < len(body):
        stripped = body[i].strip()
        if not _STARTS.match(stripped):
            i += 1
            continue
        start, parts = i, []
        while True:
            code, _, comment = body[i].strip().partition("  #")
            code = code.strip()
            if code.endswith("\\"):
                parts.append(code[:-1].strip())
                i += 1
                continue
            parts.append(code)
            break
        where = f"{name}:{first + start}"
        commands.append(DocCommand(where, " ".join(parts), _needs(comment, where)))
        i += 1
    return commands


def extract(path: Path) -> tuple[list[DocCommand], dict[str, str]]:
    """A page's commands in reading order, and the files its titled code blocks ask the reader to write."""
    name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    commands: list[DocCommand] = []
    files: dict[str, str] = {}
    for kind, first, body, info in _blocks(path.read_text().splitlines()):
        if kind == "text" or (kind == "indented" and f"`{PREFIX}" in "\n".join(body)):  # a list item's paragraph
            paragraph = "\n".join(body)
            for match in _INLINE.finditer(paragraph):
                where = f"{name}:{first + paragraph[: match.start()].count(chr(10))}"
                text = " ".join(match.group(1).split())
                commands.append(DocCommand(where, text, _needs(match.group(3) or "", where)))
            continue
        title = _TITLE.search(info)
        if title:
            files[title.group(1)] = "\n".join(body) + "\n"
        elif kind == "fenced" and info.strip().split(" ")[0] == "python" and _IMPORTS.search("\n".join(body)):
            commands.append(DocCommand(f"{name}:{first}", "\n".join(body) + "\n", python=True))
            continue
        commands.extend(_code_commands(body, first, name))
    return commands, files


def stray_commands(path: Path) -> list[str]:
    """Lines of a page that write a command outside code, where a reader cannot tell where it ends (and a
    code block that lost its indentation renders as prose)."""
    found = []
    for kind, first, body, _ in _blocks(path.read_text().splitlines()):
        if kind != "text":
            continue
        outside = re.sub(r"`[^`]*`", "", "\n".join(body), flags=re.S)
        outside = re.sub(r"<!--.*?-->", "", outside, flags=re.S)
        for offset, line in enumerate(outside.splitlines()):
            if PREFIX in line and not line.lstrip().startswith("#"):
                name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found.append(f"{name}:{first + offset}: {line.strip()}")
    return found
