"""Configs and documentation shipped in the package (advgrad/io/shipped.py, advgrad/cli/commands/config.py and docs.py):
reachable by name after `pip install`, from any folder; docs/ci.md's workflow runs as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_bad_input, invoke

from advgrad.io.run_config import tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
DOCS = ROOT / "docs"


@pytest.fixture(autouse=True)
def outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


def test_config_list_names_every_shipped_config_with_its_header():
    result = invoke(["config", "list"])
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line.split(None, 1)[1] for line in result.stdout.splitlines()}
    assert set(rows) == {p.stem for p in CONFIGS.glob("*.toml")} >= {"quick", "full", "mnist", "cifar10", "imagenet"}
    for name, description in rows.items():
        first = (CONFIGS / f"{name}.toml").read_text().splitlines()[0]
        assert first == f"# {description}"


@pytest.mark.parametrize("name", ["quick", "full.toml"])
def test_config_show_prints_the_shipped_toml(name):
    result = invoke(["config", "show", name])
    assert result.exit_code == 0, result.stderr
    shipped = (CONFIGS / name.removesuffix(".toml")).with_suffix(".toml").read_text()
    assert result.stdout == shipped
    assert tomllib.loads(result.stdout) == tomllib.loads(shipped)


def test_config_show_unknown_name_suggests_one():
    assert_bad_input(invoke(["config", "show", "quik"]), "did you mean quick?")


def test_config_by_name_from_any_folder():
    result = invoke(["eval", "--config", "quick", "--limit", "12", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    quick = tomllib.loads((CONFIGS / "quick.toml").read_text())
    assert report["n_samples"] == 12 and report["eps"] == [float(e) for e in quick["attacks"]["eps"]]
    assert report["attacks"]["pgd"]["params"]["steps"] == quick["attacks"]["steps"]
    assert Path(report["config"]["config_file"]).name == "quick.toml"


def test_a_file_wins_over_a_shipped_name(tmp_path):
    (tmp_path / "quick").write_text('attack = ["fgsm"]\neps = ["0", "0.1"]\nlimit = 7\n')
    result = invoke(["eval", "--config", "quick", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n_samples"] == 7 and list(report["attacks"]) == ["fgsm"]
    assert report["config"]["config_file"] == "quick"


def test_config_neither_file_nor_name_lists_the_names():
    assert_bad_input(invoke(["eval", "--config", "nope"]), "shipped: cifar10, full, imagenet, mnist, quick")


def test_docs_lists_and_prints_topics():
    listing = invoke(["docs"])
    assert listing.exit_code == 0, listing.stderr
    assert {line.split()[0] for line in listing.stdout.splitlines()} == {p.stem for p in DOCS.glob("*.md")}
    page = invoke(["docs", "checks"])
    assert page.exit_code == 0 and page.stdout == (DOCS / "checks.md").read_text()
    assert_bad_input(invoke(["docs", "chekcs"]), "did you mean checks?")


def test_help_points_at_what_an_installed_user_has():
    for command in (["eval", "--help"], ["attack", "--help"], ["--help"]):
        text = invoke(command).stdout
        assert "configs/" not in text and "docs/" not in text, command


# ---------------------------------------------------------------- the installed package


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """advgrad installed (no dependencies, no network) into a folder outside the checkout, built from a
    copy of the sources; the environment that runs it and nothing of the checkout."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "src"
    for name in ("advgrad", "docs", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = base / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "PATH": f"{target / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "ADVGRAD_STATE_DIR": str(base / "state"),
    }
    return {"env": env, "target": str(target)}


def _run(args: list[str], installed: dict, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=installed["env"], cwd=cwd, **kw)


@pytest.mark.slow
def test_the_installed_package_finds_its_configs_and_docs(installed, tmp_path):
    where = _run([sys.executable, "-c", "import advgrad; print(advgrad.__file__)"], installed, tmp_path)
    assert where.stdout.strip().startswith(installed["target"]), where  # not the checkout
    listing = _run([sys.executable, "-m", "advgrad", "config", "list"], installed, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^quick\s+\S", listing.stdout, re.M)
    docs = _run([sys.executable, "-m", "advgrad", "docs", "ci"], installed, tmp_path)
    assert docs.returncode == 0 and docs.stdout == (DOCS / "ci.md").read_text()
    inlined = "from advgrad.report.html_page import doc_section; print(len(doc_section('checks', 'zero-gradients')))"
    paragraphs = _run([sys.executable, "-c", inlined], installed, tmp_path)  # the HTML page inlines the docs
    assert paragraphs.returncode == 0 and int(paragraphs.stdout) > 1, paragraphs.stderr


def _workflow_steps(markdown: str) -> dict[str, str]:
    """The `run:` commands of the GitHub Actions job in docs/ci.md, by step name."""
    block = markdown.split("```yaml", 1)[1].split("```", 1)[0]
    steps: dict[str, str] = {}
    lines = block.splitlines()
    for i, line in enumerate(lines):
        found = re.match(r"(\s*)run: ?(.*)$", line)
        if not found:
            continue
        name = re.sub(r"^\s*- name: ", "", lines[i - 1]).strip()
        indent, rest = len(found.group(1)), found.group(2).split("#")[0].strip()
        if rest in (">", "|"):
            body = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following.strip())
            rest = (" " if rest == ">" else "\n").join(b for b in body if b or rest == "|")
        steps[name] = rest
    return steps


@pytest.mark.slow
def test_the_ci_workflow_runs_as_written_in_a_fresh_repository(installed, tmp_path):
    steps = _workflow_steps((DOCS / "ci.md").read_text())
    assert list(steps)[0].startswith("Install advgrad")  # done by the fixture
    repo = tmp_path / "my-project"
    repo.mkdir()
    env = {**installed["env"], "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    for attempt in ("first run: creates the baseline", "second run: compares with it"):
        for name, command in list(steps.items())[1:]:
            result = subprocess.run(
                ["bash", "-ec", command], capture_output=True, text=True, timeout=300, env=env, cwd=repo
            )
            assert result.returncode == 0, (attempt, name, result.stdout[-2000:], result.stderr[-2000:])
        if attempt.startswith("first"):
            assert "no baseline yet" in result.stdout
            (repo / "baselines").mkdir()  # the user commits the baseline the job kept
            shutil.copy(repo / "reports" / "baselines" / "quick.json", repo / "baselines" / "quick.json")
        else:
            assert "compare: passed" in result.stderr and "baseline" in result.stdout.lower()
    assert (repo / "reports" / "report.html").exists() and (repo / "reports" / "comparison.html").exists()
    assert (repo / "reports" / "junit.xml").exists() and "accuracy" in (tmp_path / "summary.md").read_text().lower()


def test_readme_says_how_to_install_the_cpu_build_of_torch_first():
    """On a machine without a GPU, `pip install -e .` alone pulls the CUDA build (gigabytes): the
    README installs the CPU build first, from PyTorch's CPU index (named, not its host), and says what
    each build costs."""
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    cpu = quick_start.index("pip install torch torchvision --index-url ")
    assert cpu < quick_start.index("pip install -e .\n", cpu)  # torch's CPU build first, then advgrad
    assert "CPU build" in quick_start and "CUDA build" in quick_start and " GB" in quick_start
