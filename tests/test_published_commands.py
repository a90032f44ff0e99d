"""Every command the README, docs/ and the study files publish names only real things: bundle run ids and settings
for ``python -m monai.bundle run``, options the module's own parser accepts for ``python -m pipeline...``, (study files:
``pipeline.bench.study.load_study`` refuses a key that is not a setting of the bundle, and tests/test_study.py loads
every shipped study). A renamed option or a typo fails here in seconds, not hours into a
regeneration."""

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "docs").glob("*.sh"),
               *(ROOT / "configs" / "studies").glob("*.yaml")])
# what `python -m monai.bundle run` itself takes besides bundle ids
MONAI_RUN_ARGS = {"config_file", "meta_file", "logging_file", "tracking", "args_file", "workflow_type"}


def commands(path: Path) -> list[str]:
    """The ``python -m ...`` commands in a file: from shell scripts (continuation lines joined), from Markdown code
    (fenced blocks and inline spans, which may wrap over lines) and from YAML descriptions, each cut at the first
    shell operator."""
    text = path.read_text()
    if path.suffix == ".sh":
        chunks = text.replace("\\\n", " ").splitlines()
    elif path.suffix == ".md":
        fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        rest = re.sub(r"```.*?```", "", text, flags=re.S)
        chunks = [line for b in fenced for line in b.replace("\\\n", " ").splitlines()]
        chunks += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", rest)]
        chunks += re.findall(r"^ {4,}(?:[A-Z_]+=\S+ )*(python -m .*)$", rest, flags=re.M)  # indented code blocks
    else:  # a study file: its description
        import yaml

        chunks = [" ".join(str(yaml.safe_load(text).get("description", "")).split())]
    found = []
    for chunk in chunks:
        for m in re.finditer(r"python -m [\w.]+.*?(?=python -m |$)", chunk):
            found.append(re.split(r"\s(?:&&|\|\||\||;|2?>)\s|`", m.group(0))[0].strip())
    return sorted(set(found))


def options(cmd: str) -> list[str]:
    try:
        words = shlex.split(cmd)
    except ValueError:  # an unbalanced quote in a wrapped inline span: split on blanks
        words = cmd.split()
    return [w[2:].split("=")[0] for w in words if w.startswith("--") and len(w) > 2]


class _Parsed(Exception):
    pass


def module_options(module: str) -> tuple[set[str], bool]:
    """The long options of ``python -m <module>``: its ``main`` is called and stopped at its ``parse_args``, whose
    parser lists every option, those hidden from ``--help`` included; and whether it passes the options it does not
    know on as bundle overrides (``parse_known_args``)."""
    import argparse

    mod = importlib.import_module(module if module != "pipeline.bench" else "pipeline.bench.speed")
    seen = []

    def capture(how):
        def parse(parser, *args, **kwargs):
            seen.append((parser, how))
            raise _Parsed
        return parse

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", capture("all"))
        mp.setattr(argparse.ArgumentParser, "parse_known_args", capture("known"))
        with pytest.raises(_Parsed):
            mod.main([])
    parser, how = seen[0]
    return {o[2:] for o in parser._option_string_actions if o.startswith("--")}, how == "known"


def module_of(cmd: str) -> str:
    return cmd.split()[2].rstrip(".,:;")


ALL = [(p, c) for p in DOCS for c in commands(p)]


def test_the_documents_publish_commands():
    assert len(ALL) > 50 and {p.name for p, _ in ALL} >= {"README.md", "accuracy.md", "performance.md"}


@pytest.mark.parametrize("path, cmd", [(p, c) for p, c in ALL if " monai.bundle run " in c + " "],
                         ids=lambda v: v.name if isinstance(v, Path) else "")
def test_bundle_commands_name_real_run_ids_and_settings(path, cmd):
    words = cmd.split()
    run_id = words[words.index("run") + 1]
    bundles = re.findall(r"bundles/(\w+)\.json", cmd)
    if not bundles and "bundles/$" in cmd:  # a script's variable: the command must suit every bundle
        bundles = [p.stem for p in (ROOT / "bundles").glob("*.json") if p.stem != "metadata"]
    assert bundles, f"{path.name}: no bundle named in {cmd!r}"
    where = f"{path.relative_to(ROOT)}: {cmd!r}"
    for bundle in bundles[:1] if "bundles/$" not in cmd else bundles:
        config = json.loads((ROOT / "bundles" / f"{bundle}.json").read_text())
        if not run_id.startswith("<"):
            assert run_id in config, f"{where}: run id {run_id!r} is not in bundles/{bundle}.json"
        unknown = [o for o in options(cmd) if o not in config and o not in MONAI_RUN_ARGS and "#" not in o]
        assert not unknown, f"{where}: {unknown} are not ids of bundles/{bundle}.json"


MODULES = sorted({module_of(c) for _, c in ALL if module_of(c).startswith("pipeline")})


@pytest.mark.parametrize("module", MODULES)
def test_pipeline_commands_name_real_options(module):
    known, overrides = module_options(module)

    def allowed(cmd):  # with overrides: also the settings of the bundle the command names
        bundle = re.findall(r"bundles/\w+\.json", cmd)
        return known | (set(json.loads((ROOT / bundle[0]).read_text())) if overrides and bundle else set())

    bad = [(str(p.relative_to(ROOT)), c, o) for p, c in ALL if module_of(c) == module
           for o in options(c) if o not in allowed(c)]
    assert not bad, f"options python -m {module} does not take: {bad}"
