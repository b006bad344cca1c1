#!/usr/bin/env python3
"""Checks the shape of the code that no compiler checks (docs/architecture.md):

- the top-level modules of src/ import each other without cycles (`crate::x` references);
- no file under src/ is longer than 600 lines unless its header says why;
- every `docs/...md#heading` (or README, tuning) link cited in the repository exists.

Exits non-zero and names each problem. Run from anywhere: `python3 tests/structure/check.py`.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
MAX_LINES = 600
problems = []


def top_module(path):
    rel = path.relative_to(SRC).parts
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def module_graph():
    edges = {}
    for f in SRC.rglob("*.rs"):
        me = top_module(f)
        if me in ("main", "lib"):
            continue
        text = f.read_text()
        # Test modules may reach anywhere; only the shipped code's structure counts.
        text = text.split("#[cfg(test)]")[0]
        for other in re.findall(r"\bcrate::(\w+)", text):
            if other != me:
                edges.setdefault(me, set()).add(other)
    return edges


def find_cycle(edges):
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def check_lengths():
    for f in sorted(SRC.rglob("*.rs")):
        lines = f.read_text().splitlines()
        if len(lines) > MAX_LINES:
            head = "\n".join(lines[:12])
            if "longer than 600 lines because" not in head:
                problems.append(f"{f.relative_to(ROOT)}: {len(lines)} lines, and its header does not say why")


def anchors_of(md):
    anchors = set()
    for line in md.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            title = m.group(1).strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def check_anchors():
    cache = {}
    pattern = re.compile(r"((?:docs/[\w/\-]+|README|tuning)\.md)#([\w\-]+)")
    files = [p for p in ROOT.rglob("*") if p.suffix in (".rs", ".md", ".py", ".sh", ".mjs", ".toml")
             and "target" not in p.parts and "node_modules" not in p.parts and ".git" not in p.parts]
    for f in files:
        for doc, anchor in pattern.findall(f.read_text(errors="replace")):
            target = ROOT / doc
            if not target.exists():
                problems.append(f"{f.relative_to(ROOT)}: cites {doc}, which does not exist")
                continue
            if target not in cache:
                cache[target] = anchors_of(target)
            if anchor not in cache[target]:
                problems.append(f"{f.relative_to(ROOT)}: cites {doc}#{anchor}, which has no such heading")


edges = module_graph()
cycle = find_cycle(edges)
if cycle:
    problems.append("import cycle among top-level modules: " + " -> ".join(cycle))
check_lengths()
check_anchors()
for p in problems:
    print(p)
print(f"structure: {len(problems)} problem(s); module order: " + ", ".join(
    f"{k} -> {{{', '.join(sorted(v))}}}" for k, v in sorted(edges.items())))
sys.exit(1 if problems else 0)
