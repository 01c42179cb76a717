#!/usr/bin/env python3
"""test/check-doc-links.py -- every relative link in the documentation leads
somewhere: the file exists, and an anchor (#...) names a heading of that file.

    python3 test/check-doc-links.py [REPO]

Checks README.md, CHANGELOG.md and docs/*.md of REPO (default: the repository
holding this script).  Links outside code spans and fenced code blocks are
read; http(s):, mailto: and other scheme links are not followed.  Anchors are
computed from headings as GitHub does (lower case, punctuation other than
"-" and "_" dropped, spaces to "-", "-1", "-2" ... for repeats).  Prints one
line per broken link and exits 1 if there is any, 0 otherwise.
"""
import glob
import os
import re
import sys

LINK = re.compile(r"(?<!\!)\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def strip_code(text):
    """Drop fenced code blocks (keeping line numbers) and inline code spans."""
    out, fence = [], None
    for line in text.split("\n"):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            out.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
            continue
        out.append(re.sub(r"(`+)(.+?)\1", "", line))
    return out


def slug(heading):
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())   # links keep their text
    h = re.sub(r"<[^>]+>", "", h).lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


_anchors = {}


def anchors(path):
    if path not in _anchors:
        found, seen, fence = set(), {}, None
        for line in open(path, encoding="utf-8").read().split("\n"):
            m = re.match(r"^\s*(`{3,}|~{3,})", line)
            if fence is None and m:
                fence = m.group(1)[0]
                continue
            if fence is not None:
                if line.strip().startswith(fence * 3):
                    fence = None
                continue
            h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if h:
                base = slug(h.group(1))
                n = seen.get(base, 0)
                found.add(base if n == 0 else f"{base}-{n}")
                seen[base] = n + 1
            for a in re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line):
                found.add(a)
        _anchors[path] = found
    return _anchors[path]


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    files = [os.path.join(repo, f) for f in ("README.md", "CHANGELOG.md") if
             os.path.exists(os.path.join(repo, f))]
    files += sorted(glob.glob(os.path.join(repo, "docs", "*.md")))
    bad = links = 0
    for path in files:
        rel = os.path.relpath(path, repo)
        for lineno, line in enumerate(strip_code(open(path, encoding="utf-8").read()), 1):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                    continue                    # http:, https:, mailto: ...
                links += 1
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                if not os.path.exists(dest):
                    print(f"{rel}:{lineno}: {target}: no such file {os.path.relpath(dest, repo)}")
                    bad += 1
                    continue
                if anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    print(f"{rel}:{lineno}: {target}: no heading with anchor #{anchor} in {os.path.relpath(dest, repo)}")
                    bad += 1
    print(f"links: {links} relative links in {len(files)} files, {bad} broken")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
