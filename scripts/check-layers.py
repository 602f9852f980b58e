#!/usr/bin/env python3
"""Keeps src/ layered (docs/API_GATEWAY_DESIGN_SPEC.md, "Module map").

Builds the file-level import graph of the crate from `use crate::/super::/
self::` items and inline `crate::`/`super::` paths (test modules left out),
and fails when:
  - two files import each other, directly or around a loop;
  - a file is longer than --max-lines (600);
  - a middleware file other than mod.rs is longer than --max-middleware (120):
    middleware are adapters, the work belongs to the features.
A `mod x;` declaration alone is not an import: a facade mod.rs may declare
its parts, but a part must not import its facade when the facade imports it.

Usage: scripts/check-layers.py [SRC_DIR] [--max-lines N] [--max-middleware N]
"""

import argparse
import pathlib
import re
import sys

USE_RE = re.compile(r"\buse\s+((?:crate|super|self)\b[^;]*);", re.S)
INLINE_RE = re.compile(r"(?<![\w:])((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
TEST_MOD_RE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")


def module_path(rel: pathlib.PurePath) -> tuple:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def without_tests_and_comments(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    out, pos = [], 0
    for m in TEST_MOD_RE.finditer(text):
        if m.start() < pos:
            continue
        out.append(text[pos : m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        pos = i
    out.append(text[pos:])
    return "".join(out)


def split_tree(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree.strip())
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [[p for p in tree.split("::") if p and p != "*"]]
    prefix = [p for p in tree[:brace].split("::") if p]
    inner = tree[brace + 1 : tree.rfind("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    paths = []
    for item in items:
        if item:
            for sub in split_tree(item):
                paths.append(prefix + [p for p in sub if p != "self"] if sub != ["self"] else prefix)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", nargs="?", default="src")
    ap.add_argument("--max-lines", type=int, default=600)
    ap.add_argument("--max-middleware", type=int, default=120)
    args = ap.parse_args()
    root = pathlib.Path(args.src)
    files = {p.relative_to(root): p.read_text(encoding="utf-8") for p in root.rglob("*.rs")}
    by_module = {module_path(rel): rel for rel in files if rel.name != "main.rs"}

    def file_of(segments: list):
        for n in range(len(segments), -1, -1):
            rel = by_module.get(tuple(segments[:n]))
            if rel is not None:
                return rel
        return None

    def absolute(rel, segments: list) -> list:
        here = list(module_path(rel))
        head, rest = segments[0], segments[1:]
        if head == "crate":
            return rest
        if head == "self":
            return here + rest
        # `super` of a/b.rs and of a/b/mod.rs alike is module a.
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
        return base + rest

    graph = {}
    for rel, text in files.items():
        if rel.name == "main.rs":
            continue
        code = without_tests_and_comments(text)
        targets = set()
        for m in USE_RE.finditer(code):
            for segs in split_tree(m.group(1)):
                if segs:
                    targets.add(file_of(absolute(rel, segs)))
        for m in INLINE_RE.finditer(code):
            targets.add(file_of(absolute(rel, m.group(1).split("::"))))
        graph[rel] = sorted(t for t in targets if t is not None and t != rel)

    problems = []
    # Depth-first search with three colours; a grey target closes a loop.
    colour, stack, seen_loops = {}, [], set()

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if colour.get(nxt) == "grey":
                loop = stack[stack.index(nxt) :]
                key = frozenset(loop)
                if key not in seen_loops:
                    seen_loops.add(key)
                    names = " -> ".join(f"src/{p}" for p in loop + [nxt])
                    problems.append(f"import cycle: {names}")
            elif nxt not in colour:
                visit(nxt)
        stack.pop()
        colour[node] = "black"

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in colour:
            visit(node)

    for rel, text in sorted(files.items()):
        lines = text.count("\n")
        if lines > args.max_lines:
            problems.append(f"src/{rel}: {lines} lines (limit {args.max_lines})")
        if rel.parts[0] == "middleware" and rel.name != "mod.rs" and lines > args.max_middleware:
            problems.append(
                f"src/{rel}: {lines} lines; middleware are adapters (limit {args.max_middleware})"
            )

    for p in problems:
        print(p)
    edges = sum(len(v) for v in graph.values())
    print(f"layers: {len(files)} files, {edges} imports between files, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
