"""Writing the demo repository's YAML files (``config.yaml``, ``pipeline.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _ReadableDumper(yaml.SafeDumper):
    """Block style, except short lists of plain values, which read best inline:
    ``inputs: [fare, age]``, ``shape: [-1, 1]``."""


def _represent_list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    flow = all(isinstance(item, str | int | float | bool) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_ReadableDumper.add_representer(list, _represent_list)


def write_yaml(path: Path, document: Any) -> Path:
    """``document`` as YAML in its written key order, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(
        document, Dumper=_ReadableDumper, sort_keys=False, width=100, allow_unicode=True
    )
    path.write_text(text, encoding="utf-8")
    return path
