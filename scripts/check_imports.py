#!/usr/bin/env python3
"""Import check (issue 17): imports flow one way, and no two files import each other.

Builds the file-level import graph of src/ and fails (exit 1) on
- a cycle between files (printed as the path around it), and
- an import against the layer order
      proto <- auth <- relay <- (config, settings, metrics, probe, import_coturn, fastpath)
            <- runtime <- http <- app <- (lib.rs, main.rs)
  where a file may import its own layer and the layers below it, never one above.

What counts as an import of file A by file B: a `use` path (crate::, super::, self::, a
child module's name; `turnpike::` in main.rs), or such a path written inline in code. It
is mapped to the file that defines it: src/a/b.rs, src/a/b/mod.rs, or the nearest existing
ancestor file (an item of src/a.rs, an inline module inside it). A parent declaring
`mod child;` is not an import; a child's `use super::X` where X lives in the parent file is
an edge child -> parent, and the parent's `use child::Y` an edge parent -> child, so a
parent and a child that import each other are a cycle. Paths into other crates (std,
tokio, ...) are ignored. Stdlib only.

Strings and comments are blanked with check_shape's lexer first; inline `mod x { ... }`
blocks are followed, so `use super::*` in a file's `mod tests` is the file itself.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_shape import code_only, matching_brace  # noqa: E402

# Rank of each top-level module: a file may import ranks up to its own.
LAYERS = [
    # The table macro every label and code enum is declared with.
    ("label_table",),
    ("proto",),
    ("auth",),
    ("relay",),
    # Beside the core, below the shell: typed config, what it means on this host
    # (settings), metric definitions, the probe and coturn import, which are clients, and
    # the kernel fast path's loader, which the shell drives.
    ("config", "settings", "metrics", "probe", "import_coturn", "fastpath"),
    ("runtime",),
    # Fleet state in Redis: an adapter beside the shell, read by HTTP and the service.
    ("fleet",),
    ("http",),
    ("app",),
    # The crate root only declares modules; the binary's main parses the command line.
    ("lib", "main"),
]
RANK = {m: i for i, group in enumerate(LAYERS) for m in group}
# Test support (builders, the core harness): compiled for the tests of every layer and
# driving any of them, so it sits outside the layer order. It still may not form a cycle.
OUTSIDE_LAYERS = {"testkit"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
USE_RE = re.compile(r"\buse\s+([^;]*);")
MOD_DECL_RE = re.compile(r"\bmod\s+(" + IDENT + r")\s*;")
MOD_BLOCK_RE = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")


class Crate:
    """The library's files, by module path (a tuple of names; () is lib.rs)."""

    def __init__(self, src):
        self.src = src
        self.files = {}  # module path -> relative file name
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".rs"):
                    rel = os.path.relpath(os.path.join(dirpath, name), src)
                    mod = module_of(rel)
                    if mod is not None:
                        self.files[mod] = os.path.join("src", rel)

    def file_of(self, path):
        """The file that defines `path` (module path + item names): the longest prefix
        that is a file."""
        for n in range(len(path), -1, -1):
            if tuple(path[:n]) in self.files:
                return self.files[tuple(path[:n])]
        return None


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts in (["lib"], ["main"]):
        return () if parts == ["lib"] else None
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def expand(tree):
    """`a::{b, c::{d, self}}` -> [[a, b], [a, c, d], [a, c]] (aliases and globs dropped)."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, t):
        if not t:
            return
        i = t.find("{")
        if i < 0:
            segs = [s for s in t.split("::") if s and s != "*"]
            if segs and segs[-1] == "self":
                segs = segs[:-1]
            out.append(prefix + segs)
            return
        head = [s for s in t[:i].split("::") if s]
        body = t[i + 1 : t.rindex("}")]
        depth, start = 0, 0
        for j, c in enumerate(body + ","):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 0:
                walk(prefix + head, body[start:j])
                start = j + 1

    walk([], tree)
    return out


def scopes(code):
    """(start, end, name) of every inline `mod name { ... }` block."""
    found = []
    for m in MOD_BLOCK_RE.finditer(code):
        i = matching_brace(code, m.end() - 1)
        found.append((m.end(), i, m.group(1)))
    return found


def module_at(file_mod, blocks, pos):
    inner = sorted((s, n) for s, e, n in blocks if s <= pos <= e)
    return file_mod + tuple(n for _, n in inner)


def resolve(crate, here, children, segs, is_main):
    """The absolute module path of `segs` used in module `here`, or None (another crate)."""
    if not segs:
        return None
    first = segs[0]
    if first == "crate" or (is_main and first == "turnpike"):
        return list(segs[1:])
    if first in ("self", "super"):
        base = list(here)
        for i, s in enumerate(segs):
            if s == "super":
                if not base:
                    return None
                base.pop()
            elif s != "self":
                return base + list(segs[i:])
        return base
    if first in children.get(here, ()):
        return list(here) + list(segs)
    return None


def file_edges(crate, rel, src, is_main):
    code = code_only(src)
    mod = () if is_main else module_of(os.path.relpath(rel, "src"))
    blocks = scopes(code)
    children = {}
    for m in MOD_DECL_RE.finditer(code):
        children.setdefault(module_at(mod, blocks, m.start()), set()).add(m.group(1))
    for s, _, n in blocks:
        children.setdefault(module_at(mod, blocks, s - 1), set()).add(n)
    paths = []
    for m in USE_RE.finditer(code):
        here = module_at(mod, blocks, m.start())
        paths += [(here, p) for p in expand(m.group(1))]
    rest = USE_RE.sub(lambda m: " " * len(m.group(0)), code)
    roots = {"crate", "super", "self"} | ({"turnpike"} if is_main else set())
    names = roots | {c for cs in children.values() for c in cs}
    inline = re.compile(r"(?<![\w:])((?:" + "|".join(sorted(names)) + r")(?:::" + IDENT + ")+)")
    for m in inline.finditer(rest):
        paths.append((module_at(mod, blocks, m.start()), m.group(1).split("::")))
    targets = set()
    for here, segs in paths:
        path = resolve(crate, here, children, segs, is_main)
        target = crate.file_of(path) if path is not None else None
        if target and target != rel:
            targets.add(target)
    return targets


def layer(rel):
    parts = os.path.relpath(rel, "src")[:-3].split(os.sep)
    return parts[0]


def find_cycles(graph):
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(graph.get(w, ())))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def cycle_path(graph, comp):
    """The shortest cycle through the component's first file, as a list of files."""
    members, start = set(comp), comp[0]
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    os.chdir(root)
    crate = Crate("src")
    graph = {}
    for mod, rel in sorted(crate.files.items(), key=lambda kv: kv[1]):
        with open(rel, encoding="utf-8") as f:
            graph[rel] = file_edges(crate, rel, f.read(), False)
    with open("src/main.rs", encoding="utf-8") as f:
        graph["src/main.rs"] = file_edges(crate, "src/main.rs", f.read(), True)
    problems = []
    edges = sum(len(t) for t in graph.values())
    for a in sorted(graph):
        la = layer(a)
        for b in sorted(graph[a]):
            lb = layer(b)
            if la in OUTSIDE_LAYERS or lb in OUTSIDE_LAYERS or la == lb:
                continue
            if la not in RANK or lb not in RANK:
                problems.append(f"layer: {a} -> {b}: module without a layer in LAYERS")
            elif RANK[lb] > RANK[la]:
                problems.append(f"layer: {a} ({la}) imports {b} ({lb}), a layer above it")
    for comp in find_cycles(graph):
        problems.append(
            f"cycle: {' -> '.join(cycle_path(graph, comp))}"
            + (f" (and {len(comp) - 2} more files in the tangle: {', '.join(comp)})" if len(comp) > 2 else "")
        )
    order = " <- ".join("(" + ", ".join(g) + ")" if len(g) > 1 else g[0] for g in LAYERS)
    lines = problems + [f"imports: layers {order}; {', '.join(sorted(OUTSIDE_LAYERS))} outside them"]
    lines.append(
        f"imports: checked {edges} imports between {len(graph)} files under src/; "
        f"{len(problems)} problem(s)"
    )
    print("\n".join(lines))
    return int(bool(problems))


if __name__ == "__main__":
    sys.exit(main())
