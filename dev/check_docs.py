"""Check that what the documentation points at exists: relative links (and their #anchors), repository paths named
in backticks, and the commands in its shell blocks (the script or config each names, `make` targets, and the
``--options`` given to r1lit's own scripts, read from their ``--help``).

    python dev/check_docs.py [README.md docs benchmarks/README.md dev/README.md dev/LOG.md]

Prints one line per problem and exits 1 if there is any. Placeholders (``<run>``, ``N``, ``…``) and globs are skipped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["README.md", "docs", "benchmarks/README.md", "dev/README.md", "dev/LOG.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
TOP = ("r1lit/", "configs/", "tools/", "benchmarks/", "dev/", "tests/", "docs/")
SCRIPT = re.compile(r"(?<![\w/.])((?:tools|benchmarks|dev)/[\w/]+\.(?:py|sh))")  # not inside tests/tools/…


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if re.match(r"#{1,6} ", line)}


@cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


@cache
def script_options(script: str) -> set[str] | None:
    """The --options a script's --help lists (None when it cannot say)."""
    if not script.endswith(".py"):
        return None
    try:
        done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    return set(re.findall(r"--[\w-]+", done.stdout)) if done.returncode == 0 else None


@cache
def build_output(path: str) -> bool:
    """Whether git ignores ``path``: something a command makes (``dev/gpu/wheels``, ``.venv``), absent from a clone."""
    try:  # as a file, then as a folder (a pattern ending in / matches only folders, and an absent one is neither)
        return any(subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, timeout=30).returncode == 0
                   for name in (path.rstrip("/"), path.rstrip("/") + "/"))
    except (OSError, subprocess.SubprocessError):
        return False


def placeholder(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Z]", text)) or any(mark in text for mark in ("<", "*", "…", "version_N", "{", "|"))


def check_file(md: Path) -> list[str]:
    problems = []
    text = md.read_text()
    where = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path_part, _, anchor = target.partition("#")
        path = (md.parent / path_part).resolve() if path_part else md
        if not path.exists():
            problems.append(f"{where}: link to {target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"{where}: link to {target}: no heading with that anchor")
    for match in CODE.finditer(text):
        code = match.group(1).strip()
        for token in code.split():
            token = token.strip("(),;:'\"")
            if token.startswith(TOP) and not placeholder(token) and "=" not in token:
                path, _, test = token.partition("::")  # a pytest node id: the file, then a test defined in it
                if not (ROOT / path).exists():
                    if not build_output(path):
                        problems.append(f"{where}: `{token}`: no such path")
                elif test and not re.search(rf"^\s*def {re.escape(test.split('[')[0])}\(", (ROOT / path).read_text(), re.M):
                    problems.append(f"{where}: `{token}`: no such test in {path}")
        if SCRIPT.search(code) or code.startswith(("make ", "r1lit fit")):
            problems += check_command(code, where)
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        command = ""
        for line in block.splitlines():
            line = line.split("  #")[0].rstrip()
            if line.lstrip().startswith("#"):
                continue
            command += line.rstrip("\\") + " "
            if line.endswith("\\"):
                continue
            problems += check_command(command.strip(), where)
            command = ""
    return problems


def check_command(command: str, where: Path) -> list[str]:
    problems = []
    words = command.split()
    if words[:1] == ["make"]:
        for target in words[1:]:
            if "=" not in target and target not in make_targets():
                problems.append(f"{where}: `{command}`: no make target {target}")
    for script in SCRIPT.findall(command):
        if not (ROOT / script).exists():
            problems.append(f"{where}: `{command}`: no such script {script}")
            continue
        options = script_options(script)
        if options is not None:
            after = command.split(script, 1)[1].split()
            for word in after:
                flag = word.split("=")[0]
                if flag.startswith("--") and not placeholder(flag) and flag not in options:
                    problems.append(f"{where}: `{command}`: {script} has no option {flag}")
    for config in re.findall(r"--config[= ](\S+)", command):
        if not placeholder(config) and not (ROOT / config).exists():
            problems.append(f"{where}: `{command}`: no such config {config}")
    return problems


def main(argv: list[str]) -> int:
    files = []
    for name in argv or DEFAULT:
        path = ROOT / name
        files += sorted(path.rglob("*.md")) if path.is_dir() else [path]
    problems = [p for md in files for p in check_file(md)]
    for problem in problems:
        print(problem)
    print(f"{len(files)} files checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
