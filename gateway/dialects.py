"""Which dialect a request speaks, which route it names, and how to re-address it.

The gateway proxies the runtime's dialects unchanged; only the model and version in the
path change when the plan picks another target (an A/B arm, a fallback, a shadow). Bodies
are forwarded byte for byte.

    /v2/models/{m}[/versions/{v}]/infer          Open Inference Protocol
    /v1/models/{m}[/versions/{v}|/labels/{l}]:predict   TF-Serving REST
    /v1/models/{m}[/versions/{v}]/eval           simple eval API
    /v1/models/{m}[/versions/{v}]/explain        per-row attributions (eval's body)

``explain`` is routed and authorised like eval, and its query string (``output``,
``index``, ``samples``, ``background``) goes along; the other dialects take none. Its
answers are attributions, not predictions: ``predicts`` is false for it, and the proxy
neither records them in the prediction log nor mirrors them to shadows.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from gateway.policy import Target

_PATTERNS = (
    ("v2", re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")),
    (
        "tfserving",
        re.compile(
            r"^/v1/models/(?P<model>[^/:]+)(?:/(?P<by>versions|labels)/(?P<version>[^/:]+))?:predict$"
        ),
    ),
    ("eval", re.compile(r"^/v1/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/eval$")),
    (
        "explain",
        re.compile(r"^/v1/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/explain$"),
    ),
)
#: Dialects whose query string is forwarded (the others' is dropped, as before).
_WITH_QUERY = frozenset({"explain"})


@dataclass(frozen=True)
class InferencePath:
    dialect: str  # v2 | tfserving | eval | explain
    model: str
    version: str | None
    query: str = ""  # without the "?"; explain only
    #: The path's template, as the SERVER span's ``http.route`` (OpenTelemetry semconv).
    template: str = ""

    @property
    def predicts(self) -> bool:
        """Whether the answer is a prediction: what the log records and shadows compare."""
        return self.dialect != "explain"

    def for_target(self, target: Target) -> str:
        """The runtime path (and query) of this request addressed to ``target``."""
        version = f"/versions/{target.version}" if target.version else ""
        if self.dialect == "v2":
            return f"/v2/models/{target.model}{version}/infer"
        if self.dialect == "tfserving":
            return f"/v1/models/{target.model}{version}:predict"
        if self.dialect == "explain":
            query = f"?{self.query}" if self.query else ""
            return f"/v1/models/{target.model}{version}/explain{query}"
        return f"/v1/models/{target.model}{version}/eval"


@functools.lru_cache(maxsize=4096)  # a handful of paths in practice; the answer is immutable
def parse_inference_path(path: str, query: str = "") -> InferencePath | None:
    for dialect, pattern in _PATTERNS:
        match = pattern.match(path)
        if match:
            kept = query if dialect in _WITH_QUERY else ""
            return InferencePath(
                dialect, match["model"], match["version"], kept, _template(dialect, match)
            )
    return None


def _template(dialect: str, match: re.Match[str]) -> str:
    if dialect == "tfserving":
        named = {"versions": "/versions/{version}", "labels": "/labels/{label}"}
        return "/v1/models/{model}" + named.get(match["by"] or "", "") + ":predict"
    prefix = "/v2/models/{model}" if dialect == "v2" else "/v1/models/{model}"
    version = "/versions/{version}" if match["version"] else ""
    verb = "infer" if dialect == "v2" else dialect
    return f"{prefix}{version}/{verb}"
