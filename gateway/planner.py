"""Route planning: which target answers a request, what backs it up, and what is mirrored.

:func:`plan_route` is a pure function of a :class:`~gateway.policy.RoutePolicy` and a
:class:`RequestContext`: no clock, no randomness, no I/O. "Random" choices are stable hashes
(BLAKE2b, never Python's salted ``hash()``), so the same inputs give the same plan in every
process and every gateway replica. The dispatcher executes the plan: it tries
``plan.targets`` in order (each with the route's retries on other replicas), answers from
the first that succeeds, then mirrors ``plan.shadows`` without delaying the answer.

Decisions (``docs/routing.md`` has the user-facing version):

- **Arm.** The sticky key (JWT subject, a header, or a top-level JSON body field; the
  request id when the key is missing or ``by: random``) is hashed with the route name to a
  point in ``[0, 1)``; arms own consecutive slices of that interval in the order they are
  listed, sized by weight. The same key always lands on the same arm, and changing weights
  moves only the keys whose point changes slice: going from 90/10 to 50/50 keeps every key
  below 0.5 on the first arm.
- **Version override.** A request that names a version (``/v2/models/m/versions/2/infer``)
  is answered by exactly that version of the primary's model: no split (``arm`` is None) and
  no fallback, since the client asked for that version and nothing else. Shadows still apply.
- **Shadow.** Whether a request is mirrored is a hash of the route and request id against
  ``percent``, with a different hash from the arm choice so mirrored traffic is spread over
  the arms. One point serves every shadow of the route: a request mirrored to a 10% shadow
  is also mirrored to any shadow of 10% or more, so shadows are compared on the same requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import msgspec

from gateway.policy_model import Arm, Compare, RoutePolicy, Split, Target
from monitoring.body_encoding import decode_body

PRIMARY_ARM = "primary"
"""``Plan.arm`` for a route without a split."""

KeySource = Literal["subject", "header", "field", "request_id"]

_SPACE = 1 << 64  # hash points are integers in [0, 2**64)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the planner may look at. Built by the dispatcher after auth, before any I/O.

    ``headers`` must have lower-cased names. ``body_field(name)`` returns a top-level field
    of the JSON body, or None (see :func:`json_body_fields`); it is only called for routes
    sticky ``by: field``. ``version`` is the version named in the URL, if any.
    """

    route: str
    request_id: str
    subject: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body_field: Callable[[str], object] | None = None
    version: str | None = None


class ShadowPlan(msgspec.Struct, frozen=True):
    """A target to mirror this request to, and how to compare its answer (None: don't)."""

    target: Target
    compare: Compare | None = None


class Plan(msgspec.Struct, frozen=True):
    """The routing decision for one request.

    ``arm``: the split arm's name, ``"primary"`` without a split, None for a version override.
    ``targets``: the answering target first, then the fallback chain in order.
    ``key_source``: where the split's sticky key came from (None without a split), for traces:
    ``"request_id"`` means the configured key was missing and the choice was not sticky.
    """

    arm: str | None
    targets: tuple[Target, ...]
    shadows: tuple[ShadowPlan, ...] = ()
    key_source: KeySource | None = None

    @property
    def answering(self) -> Target:
        return self.targets[0]

    @property
    def fallbacks(self) -> tuple[Target, ...]:
        return self.targets[1:]


def plan_route(policy: RoutePolicy, ctx: RequestContext) -> Plan:
    """Decide the answering target, the fallback chain and the shadows for one request.

    Raises :class:`~gateway.policy.PolicyError` when ``ctx.version`` is not a valid version
    name (the client's mistake: answer 400).
    """
    key_source: KeySource | None = None
    if ctx.version is not None:
        arm_name: str | None = None
        targets: tuple[Target, ...] = (Target(policy.primary.model, ctx.version),)
    else:
        if policy.split is None:
            arm_name, answering = PRIMARY_ARM, policy.primary
        else:
            key, key_source = _sticky_key(policy.split, ctx)
            arm = choose_arm(ctx.route, policy.split, key)
            arm_name, answering = arm.name, arm.target
        targets = (answering, *(t for t in policy.fallback if t != answering))
    shadows = tuple(
        ShadowPlan(shadow.target, shadow.compare)
        for shadow in policy.shadow
        if shadow.target != targets[0] and mirrors(ctx.route, ctx.request_id, shadow.percent)
    )
    return Plan(arm=arm_name, targets=targets, shadows=shadows, key_source=key_source)


def choose_arm(route: str, split: Split, key: str) -> Arm:
    """The arm whose slice of ``[0, 1)`` holds the hash point of ``(route, key)``."""
    bucket = (_point(b"driftgate.arm", route, key) * split.total_weight) // _SPACE
    for arm in split.arms:
        if bucket < arm.weight:
            return arm
        bucket -= arm.weight
    raise AssertionError("unreachable: bucket < total weight")


def mirrors(route: str, request_id: str, percent: float) -> bool:
    """Whether this request goes to a shadow of ``percent``; stable per request id."""
    return _point(b"driftgate.shadow", route, request_id) < percent / 100 * _SPACE


#: The most a compressed body is inflated to on the request path for its sticky field:
#: a few milliseconds at most; a larger body is drawn at random (the runtime still reads
#: it whole, and so does the prediction log, off the request path).
FIELD_INFLATE_LIMIT = 1024 * 1024


def json_body_fields(
    body: bytes, encoding: str | None = None, limit: int = 0
) -> Callable[[str], object]:
    """A ``body_field`` lookup over a JSON object body, split once and only when first used.

    A body that is not a JSON object (an image, a list, invalid JSON, JSON nested too deeply
    for the decoder) has no fields: the runtime judges the body itself. Only the top level
    is decoded up front, and only the field asked for after that. A body sent with a
    ``Content-Encoding`` (``encoding``, the header) is inflated first, as the runtime
    inflates it, to at most ``limit`` bytes and ``FIELD_INFLATE_LIMIT``; one that cannot be
    has no fields either. Only a route sticky by a body field pays for that, and only for
    compressed bodies.
    """
    fields: list[dict[str, msgspec.Raw]] = []

    def lookup(name: str) -> object:
        if not fields:
            try:
                plain = (
                    decode_body(body, encoding, min(limit, FIELD_INFLATE_LIMIT))
                    if encoding
                    else body
                )
            except Exception:  # any body: the runtime judges it, the planner only looks
                plain = b""
            fields.append(_decoded(plain, dict[str, msgspec.Raw]) or {})
        raw = fields[0].get(name)
        return None if raw is None else _decoded(raw, object)

    return lookup


def _decoded(data: bytes | msgspec.Raw, kind: type[_T]) -> _T | None:
    """``data`` decoded as ``kind``, or None when it is not that (or not JSON at all)."""
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, RecursionError):  # msgspec recurses: "[[[[..." thousands deep
        return None


def _sticky_key(split: Split, ctx: RequestContext) -> tuple[str, KeySource]:
    """The configured key, or the request id (not sticky) when it is missing or ``random``."""
    sticky = split.sticky
    key: str | None = None
    source: KeySource = "request_id"
    if sticky.by == "subject":
        key, source = _scalar_text(ctx.subject), "subject"
    elif sticky.by == "header" and sticky.name:
        key, source = _scalar_text(ctx.headers.get(sticky.name.lower())), "header"
    elif sticky.by == "field" and sticky.name and ctx.body_field is not None:
        key, source = _scalar_text(ctx.body_field(sticky.name)), "field"
    if key is None:
        return ctx.request_id, "request_id"
    return key, source


def _scalar_text(value: object) -> str | None:
    """A sticky key from a scalar: ``12``, ``12.0`` and ``"12"`` are the same key; empty is
    missing."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():  # JSON has no inf or NaN
        return str(int(value))
    if isinstance(value, str | int | float) and str(value):
        return str(value)
    return None


def _point(purpose: bytes, *parts: str) -> int:
    """A uniform point in ``[0, 2**64)``; ``purpose`` keeps arm and shadow hashes independent."""
    data = "\0".join(parts).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=8, person=purpose).digest()
    return int.from_bytes(digest, "big")
