"""Which dialect a request speaks, which route it names, and how to re-address it.

The gateway proxies the runtime's three dialects unchanged; only the model and version
in the path change when the plan picks another target (an A/B arm, a fallback, a
shadow). Bodies are forwarded byte for byte.

    /v2/models/{m}[/versions/{v}]/infer          Open Inference Protocol
    /v1/models/{m}[/versions/{v}|/labels/{l}]:predict   TF-Serving REST
    /v1/models/{m}[/versions/{v}]/eval           simple eval API
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.policy import Target

_PATTERNS = (
    ("v2", re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")),
    (
        "tfserving",
        re.compile(
            r"^/v1/models/(?P<model>[^/:]+)(?:/(?:versions|labels)/(?P<version>[^/:]+))?:predict$"
        ),
    ),
    ("eval", re.compile(r"^/v1/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/eval$")),
)


@dataclass(frozen=True)
class InferencePath:
    dialect: str  # v2 | tfserving | eval
    model: str
    version: str | None

    def for_target(self, target: Target) -> str:
        """The runtime path of this request addressed to ``target``."""
        version = f"/versions/{target.version}" if target.version else ""
        if self.dialect == "v2":
            return f"/v2/models/{target.model}{version}/infer"
        if self.dialect == "tfserving":
            return f"/v1/models/{target.model}{version}:predict"
        return f"/v1/models/{target.model}{version}/eval"


def parse_inference_path(path: str) -> InferencePath | None:
    for dialect, pattern in _PATTERNS:
        match = pattern.match(path)
        if match:
            return InferencePath(dialect, match["model"], match["version"])
    return None
