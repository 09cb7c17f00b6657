"""The dialect-neutral request and response every codec translates to and from.

Codecs (``runtime.codecs``) parse HTTP bodies into an ``InferenceRequest`` holding numpy
arrays by input name; the repository validates it, runs the model and answers an
``InferenceResponse``; the codec renders that back in the client's dialect and form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class InferenceRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    #: Output names the client asked for; ``None`` means all of them.
    outputs: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
