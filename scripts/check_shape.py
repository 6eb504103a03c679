#!/usr/bin/env python3
"""Code shape check (issue 17): no function over 80 lines, no file over 500 lines.

Scans every .rs file under src/, fuzz/ (its target/ left out) and examples/. A function's
length runs from its `fn` line to its closing brace, inclusive; test modules count too.
Exits 1 and names each offender when there is one. Stdlib only, so CI needs nothing.

Braces are matched on a copy of the source with strings, chars and comments blanked out
(newlines kept, so line numbers hold). It is a lexer good enough for this codebase, not a
Rust parser: `fn` items inside macros such as `proptest!` are found like any other.
"""
import os
import re
import sys

MAX_FN_LINES = 80
MAX_FILE_LINES = 500
ROOTS = ("src", "fuzz", "examples")
SKIP_DIRS = {"target", ".git"}

FN_RE = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")
RAW_STR_RE = re.compile(r'b?r(#*)"')


def blank(text):
    """Blanks what braces in it could confuse: comments, strings, chars."""
    return re.sub(r"[^\n]", " ", text)


def code_only(src):
    """Returns `src` with comments, string and char literals replaced by spaces."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        prev_ident = i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")
        if c == "/" and nxt == "/":
            end = src.find("\n", i)
            end = n if end < 0 else end
        elif c == "/" and nxt == "*":
            end = skip_block_comment(src, i)
        elif c in "rb" and not prev_ident and RAW_STR_RE.match(src, i):
            m = RAW_STR_RE.match(src, i)
            close = '"' + m.group(1)
            end = src.find(close, m.end())
            end = n if end < 0 else end + len(close)
        elif c == '"':
            end = skip_quoted(src, i, '"')
        elif c == "'":
            end = skip_char_literal(src, i)
        else:
            out.append(c)
            i += 1
            continue
        out.append(blank(src[i:end]))
        i = end
    return "".join(out)


def skip_block_comment(src, i):
    # Rust block comments nest.
    depth, i = 0, i
    while i < len(src):
        if src.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif src.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(src)


def skip_quoted(src, i, quote):
    i += 1
    while i < len(src):
        if src[i] == "\\":
            i += 2
        elif src[i] == quote:
            return i + 1
        else:
            i += 1
    return len(src)


def skip_char_literal(src, i):
    """A char literal ('x', '\\n', '\\u{1F600}') or, if not one, a lifetime ('a)."""
    if i + 1 < len(src) and src[i + 1] == "\\":
        return skip_quoted(src, i, "'")
    if i + 2 < len(src) and src[i + 2] == "'":
        return i + 3
    return i + 1  # a lifetime or label: leave the name as code


def functions(code):
    """Yields (name, first line, last line) of each fn with a body, nested ones too."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", code)]

    def line_of(pos):
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    for m in FN_RE.finditer(code):
        body = body_start(code, m.end())
        if body is None:
            continue  # a declaration without body (trait method, extern fn)
        end = matching_brace(code, body)
        yield m.group(1), line_of(m.start()), line_of(end)


def body_start(code, i):
    """Index of the `{` that opens the body, or None when a `;` ends the signature first."""
    parens = 0
    while i < len(code):
        c = code[i]
        if c in "([":
            parens += 1
        elif c in ")]":
            parens -= 1
        elif parens == 0 and c == "{":
            return i
        elif parens == 0 and c == ";":
            return None
        i += 1
    return None


def matching_brace(code, i):
    depth = 0
    while i < len(code):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(code) - 1


def rust_files(root):
    for base in ROOTS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, base)):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith(".rs"):
                    yield os.path.join(dirpath, name)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    problems = []
    files = fns = 0
    longest = ("", 0)
    for path in rust_files(root):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            src = f.read()
        files += 1
        lines = src.count("\n") + (0 if src.endswith("\n") or not src else 1)
        if lines > MAX_FILE_LINES:
            problems.append(f"{rel}: file has {lines} lines (max {MAX_FILE_LINES})")
        for name, first, last in functions(code_only(src)):
            fns += 1
            length = last - first + 1
            if length > longest[1]:
                longest = (f"{rel}:{first} {name}", length)
            if length > MAX_FN_LINES:
                problems.append(
                    f"{rel}:{first}: fn {name} has {length} lines (max {MAX_FN_LINES})"
                )
    for p in problems:
        print(p)
    print(
        f"shape: checked {fns} functions in {files} files under {', '.join(ROOTS)}; "
        f"longest fn {longest[1]} lines ({longest[0]}); {len(problems)} over the limits"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
