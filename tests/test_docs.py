"""README.md and docs/*.md cannot rot: every study they show loads, every `raysweep` command line they show parses
with the real CLI parser, every `raysweep.<name>(...)` they call exists, and every relative link resolves."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

import raysweep
from raysweep.cli import build_parser
from raysweep.config import load_study

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
STUDY_KEYS = {"tokenizers", "dataset", "diffusion", "metrics"}
# studies that need more than the loader: their own test runs them as the page says
COVERED_ELSEWHERE = {("add-a-regularizer.md", "tv-sweep"): "tests/test_readme_regularizer.py registers `tv` first"}


def blocks(*languages: str) -> list[tuple[str, str]]:
    """(page name, code) of every fenced block in one of `languages` ("" for a fence without one)."""
    return [(page.name, code) for page in PAGES for lang, code in FENCE.findall(page.read_text()) if lang in languages]


def studies() -> list[tuple[str, str, str]]:
    """(page, study name, YAML) of the YAML blocks that are whole studies: a `name` and a study section."""
    found = []
    for page, code in blocks("yaml"):
        data = yaml.safe_load(code)
        if isinstance(data, dict) and "name" in data and STUDY_KEYS & set(data):
            found.append((page, data["name"], code))
    return found


def command_lines() -> list[tuple[str, list[str]]]:
    """(page, arguments after `raysweep`) of every raysweep command in a bash or plain block; a command is the
    first word of a `&&`/`;`/`|` segment after any VAR=value assignments (so `cd ~/raysweep` is none)."""
    found = []
    for page, code in blocks("bash", ""):
        for line in code.replace("\\\n", " ").splitlines():
            for segment in re.split(r"&&|\|\||;|\|", line.split(" #")[0]):
                words = shlex.split(segment.strip()) if segment.strip() else []
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]
                if words and Path(words[0]).name == "raysweep":
                    found.append((page, words[1:]))
    return found


def test_the_pages_show_what_the_tests_below_check() -> None:
    """Guards the collectors: if the fences or the README changed shape, the checks below would pass on nothing."""
    assert {"README.md", "study-files.md", "proxy.md"} <= {page for page, _, _ in studies()}
    commands = command_lines()
    assert ("README.md", ["run", "experiments/quickstart.yaml"]) in commands
    assert {"run", "validate", "plan", "analyze"} <= {args[0] for _, args in commands}
    assert set(COVERED_ELSEWHERE) <= {(page, name) for page, name, _ in studies()}


@pytest.mark.parametrize(("page", "name", "code"), [s for s in studies() if s[:2] not in COVERED_ELSEWHERE],
                         ids=lambda v: v if len(v) < 40 else "")
def test_every_study_block_loads(page: str, name: str, code: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYSWEEP_STORAGE", str(tmp_path / "studies"))
    (tmp_path / "study.yaml").write_text(code)
    study = load_study(tmp_path / "study.yaml")
    assert study.name == name and study.tokenizer_trials


@pytest.mark.parametrize(("page", "args"), command_lines(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_command_parses(page: str, args: list[str], capsys) -> None:
    """The subcommand exists and takes these flags and arguments (argparse exits on anything it does not know)."""
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{page}: `raysweep {' '.join(args)}`: {capsys.readouterr().err.strip()}")
    assert parsed.command == args[0]


def test_every_python_api_call_exists() -> None:
    called = {name for _, code in blocks("python") for name in re.findall(r"\braysweep\.(\w+)\(", code)}
    assert {"load", "plan", "run", "status", "table", "analyze_table"} <= called
    assert [name for name in sorted(called) if not callable(getattr(raysweep, name, None))] == []


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", FENCE.sub("", file.read_text()), flags=re.M)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_no_file_holds_merge_conflict_markers() -> None:
    """A merge's markers once landed in a results file; every tracked text file is checked."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    marked = [f for f in files if f.endswith((".py", ".md", ".yaml", ".toml", ".txt", ".cfg"))
              and re.search(r"^(<{7}|>{7}) ", (ROOT / f).read_text(errors="replace"), re.M)]
    assert not marked, marked
