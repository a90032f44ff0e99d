"""The bundle files: what each states by hand, and the shared tail that is written for it.

MONAI reads one ``--config_file`` and resolves every ``@id`` and every ``--id value`` override against the root
ids *of that file*; its config system has no include that adds root ids from another file (``%`` macros replace a
value, a list of files needs the list on the command line). So each bundle file has two parts:

- above the ``"_shared_"`` key, by hand: the bundle's name, layout, readers, augmentation and the values where it
  departs from ``configs/defaults.json``;
- from ``"_shared_"`` on, written by ``python -m pipeline.bundles``: one ``%`` macro for every default it does not
  set and for every id of ``configs/engine.json``, ``metadata`` (its own ``configs/metadata/<bundle>.json``) and
  ``settings``, a reference to every setting the bundle has (defaults and its own), which the workflow resolves and
  each run records.

MONAI reads ``metadata.json`` beside the config file, the same file for every bundle in ``bundles/``; that file
refers each field to the bundle's ``metadata`` id, so each bundle's ``_meta_`` is its own.

A default's *value* lives once, in ``configs/defaults.json``, and reaches every bundle through its macro. A new
default or a new bundle key is one edit, then ``python -m pipeline.bundles`` (the test suite and every run check
that the tails are current, and say so with this command when they are not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = "configs/defaults.json"
ENGINE = "configs/engine.json"
MARKER = "_shared_"
MARKER_TEXT = ("below: written by `python -m pipeline.bundles` - the defaults this bundle does not change "
               "(configs/defaults.json), the shared engine (configs/engine.json) and the settings its runs record")
# ids of a bundle that are components (transform lists, samplers): recorded as written, not as settings
COMPONENT_KEYS = ("read_image", "load_image", "load_label", "augmentation", "train_sampler")


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON bundle ({e})") from None


def own_part(bundle: dict) -> dict:
    """The hand-written ids of a bundle: everything before the ``_shared_`` marker."""
    own = {}
    for key, value in bundle.items():
        if key == MARKER:
            break
        own[key] = value
    return own


def _is_component(key: str, value, defaults: dict) -> bool:
    # an expression standing for a default (NIfTI's in_channels from context_slices) is that setting, computed
    return key in COMPONENT_KEYS or _has_target(value) or (
        isinstance(value, str) and value.startswith("$") and key not in defaults)


def setting_keys(own: dict, defaults: dict) -> list[str]:
    """Every setting of a bundle, in a stable order: its own values, then the defaults it does not set.
    Components (readers, augmentation, samplers) are not settings: resolving them would build them."""
    keys = [k for k, v in own.items() if not _is_component(k, v, defaults)]
    return keys + [k for k in defaults if k not in own and k not in COMPONENT_KEYS]


def compose(bundle_path: str | Path, root: Path = ROOT) -> dict:
    """The bundle with its shared tail written anew from ``configs/defaults.json`` and ``configs/engine.json``."""
    bundle_path = Path(bundle_path)
    own = own_part(_load(bundle_path))
    defaults, engine = _load(root / DEFAULTS), _load(root / ENGINE)
    out = dict(own)
    out[MARKER] = MARKER_TEXT
    for key in defaults:
        if key not in own:
            out[key] = f"%{DEFAULTS}#{key}"
    for key in engine:
        if key not in own and key != "settings":
            out[key] = f"%{ENGINE}#{key}"
    if "metadata" not in own:
        out["metadata"] = f"%configs/metadata/{own.get('bundle_name')}.json"
    out["settings"] = {k: f"@{k}" for k in setting_keys(own, defaults)}
    return out


def _value(value, indent: str) -> str:
    """One line for a short value; a list of components one element per line, as the bundles are written."""
    text = json.dumps(value)
    if len(text) <= 100 or not isinstance(value, (list, dict)):
        return text
    if isinstance(value, list):
        inner = indent + "    "
        return "[\n" + ",\n".join(inner + _value(v, inner) for v in value) + "\n" + indent + "]"
    inner = indent + "    "
    return "{\n" + ",\n".join(f"{inner}{json.dumps(k)}: {_value(v, inner)}" for k, v in value.items()) + "\n" + indent + "}"


def _packed(pairs: list[str], indent: str, width: int = 118) -> list[str]:
    lines, line = [], ""
    for pair in pairs:
        if line and len(indent) + len(line) + len(pair) + 2 > width:
            lines.append(indent + line + ",")
            line = ""
        line = f"{line}, {pair}" if line else pair
    return lines + [indent + line] if line else lines


def dumps(bundle: dict) -> str:
    """The bundle as JSON: its own part one id per line, the written tail packed several ids to a line."""
    own = own_part(bundle)
    lines = [f"    {json.dumps(k)}: {_value(v, '    ')}," for k, v in own.items()]
    tail = {k: v for k, v in bundle.items() if k not in own}
    settings = tail.pop("settings", {})
    lines += ["", f"    {json.dumps(MARKER)}: {json.dumps(tail.pop(MARKER, MARKER_TEXT))},"]
    lines += _packed([f"{json.dumps(k)}: {json.dumps(v)}" for k, v in tail.items()], "    ")
    lines[-1] += ","
    lines += ['    "settings": {'] + _packed([f"{json.dumps(k)}: {json.dumps(v)}" for k, v in settings.items()],
                                          "        ") + ["    }"]
    return "{\n" + "\n".join(lines) + "\n}\n"


def bundle_files(root: Path = ROOT) -> list[Path]:
    """The bundles: the JSON files in ``bundles/`` that name themselves (``bundle_name``); metadata files are not."""
    return [p for p in sorted((root / "bundles").glob("*.json")) if "bundle_name" in _load(p)]


def stale(bundle_path: str | Path, root: Path = ROOT) -> bool:
    """True when the bundle's tail is not what :func:`compose` writes (a default or an engine id was added or
    removed since, or the tail was edited by hand)."""
    return _load(Path(bundle_path)) != compose(bundle_path, root)


def check_current(bundle_file: str, root: Path | None = None) -> str:
    """Stop a run whose bundle tail is out of date, with the command that brings it up to date."""
    base = Path(root) if root is not None else Path.cwd()
    path = base / bundle_file
    if path.is_file() and (base / DEFAULTS).is_file() and stale(path, base):
        raise SystemExit(f"error: {bundle_file} is out of date with {DEFAULTS} / {ENGINE} (an id was added or "
                         "removed): run `python -m pipeline.bundles` and commit the result")
    return bundle_file


def file_values(bundle_file: str | Path, root: Path | None = None) -> dict:
    """The literal value of each setting as the bundle file (and the defaults it forwards) states it, before any
    override; settings written as expressions or references are left out (they cannot be compared)."""
    base = Path(root) if root is not None else Path.cwd()
    bundle = _load(base / bundle_file)
    defaults = _load(base / DEFAULTS)
    values = {}
    for key, value in own_part(bundle).items():
        values[key] = value
    for key, value in defaults.items():
        values.setdefault(key, value)
    return {k: v for k, v in values.items() if not _has_target(v) and not _has_reference(v)}


def _has_reference(value) -> bool:
    if isinstance(value, dict):
        return any(_has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return isinstance(value, str) and value[:1] in ("$", "@", "%")


def _has_target(value) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_target(v) for v in value)
    return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bundles", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report bundles whose tail is out of date (exit 1)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this checkout)")
    args = ap.parse_args(argv)
    bad = []
    for path in bundle_files(args.root):
        if not stale(path, args.root):
            continue
        bad.append(path)
        if not args.check:
            path.write_text(dumps(compose(path, args.root)))
            print(f"wrote {path.relative_to(args.root)}")
    if args.check and bad:
        print("out of date: " + ", ".join(str(p.relative_to(args.root)) for p in bad) + "; run python -m pipeline.bundles")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
