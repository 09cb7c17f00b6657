"""Route policies: what parses, what is refused (and how the refusal reads), round trips."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from gateway.policy import default_route, parse_route, parse_routes, route_to_dict
from gateway.policy_model import (
    Arm,
    CircuitBreakerSettings,
    Compare,
    PolicyError,
    RoutePolicy,
    Shadow,
    Split,
    Sticky,
    Target,
)

ROUTING_DOC = Path(__file__).parents[2] / "docs" / "routing.md"

EXAMPLE_YAML = """
titanic:
  primary: {model: titanic, version: "1"}
  split:
    sticky: {by: subject}
    arms:
      - {name: control, target: {model: titanic, version: "1"}, weight: 90}
      - {name: treatment, target: {model: titanic, version: "2"}, weight: 10}
  shadow:
    - target: {model: titanic, version: "3"}
      percent: 25
      compare: {kind: class, output: survived}
  fallback:
    - {model: titanic_pmml}
  retries: 2
  per_try_timeout_s: 2.0
  timeout_s: 5.0
  circuit_breaker: {failures: 5, open_s: 10}
"""
EXAMPLE: dict[str, Any] = yaml.safe_load(EXAMPLE_YAML)["titanic"]

DELETE = object()


def changed(path: str, value: object) -> dict[str, Any]:
    """A copy of EXAMPLE with the key at ``path`` (``split.arms[1].weight``) set or deleted.

    An index one past the end of a list appends.
    """
    raw = copy.deepcopy(EXAMPLE)
    *parents, last = re.findall(r"[^.\[\]]+", path)
    node: Any = raw
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    elif isinstance(node, list) and key == len(node):
        node.append(value)
    else:
        node[key] = value
    return raw


def test_the_full_example_parses_into_typed_data() -> None:
    policy = parse_routes(yaml.safe_load(EXAMPLE_YAML))["titanic"]

    assert policy == RoutePolicy(
        primary=Target("titanic", "1"),
        split=Split(
            sticky=Sticky(by="subject"),
            arms=(
                Arm(name="control", target=Target("titanic", "1"), weight=90),
                Arm(name="treatment", target=Target("titanic", "2"), weight=10),
            ),
        ),
        shadow=(
            Shadow(
                target=Target("titanic", "3"),
                percent=25,
                compare=Compare(kind="class", output="survived"),
            ),
        ),
        fallback=(Target("titanic_pmml"),),
        retries=2,
        per_try_timeout_s=2.0,
        timeout_s=5.0,
        circuit_breaker=CircuitBreakerSettings(failures=5, open_s=10),
    )
    assert policy.answering_targets == (Target("titanic", "1"), Target("titanic", "2"))


def test_a_minimal_route_gets_the_documented_defaults() -> None:
    policy = parse_route("iris", {})

    assert policy == default_route("iris")
    assert policy.primary == Target(model="iris", version=None)  # primary defaults to the name
    assert (policy.split, policy.shadow, policy.fallback) == (None, (), ())
    assert policy.retries == 1
    assert policy.per_try_timeout_s is None
    assert policy.timeout_s == 15.0
    assert policy.circuit_breaker == CircuitBreakerSettings(failures=5, open_s=10.0)


def test_unquoted_yaml_versions_are_read_as_strings() -> None:
    policy = parse_route("titanic", yaml.safe_load("primary: {model: titanic, version: 2}"))
    assert policy.primary == Target("titanic", "2")


def test_circuit_breaker_null_switches_it_off() -> None:
    assert parse_route("titanic", {"circuit_breaker": None}).circuit_breaker is None


def test_parse_routes_accepts_an_empty_routes_section() -> None:
    assert parse_routes(None) == {}
    assert parse_routes({}) == {}


INVALID_CASES: list[tuple[str, object, str]] = [
    # split arms
    ("split.arms[1].weight", -3, "split.arms[1].weight: must be >= 0, got -3"),
    (
        "split.arms",
        [
            {"name": "control", "target": {"model": "titanic", "version": "1"}, "weight": 0},
            {"name": "treatment", "target": {"model": "titanic", "version": "2"}, "weight": 0},
        ],
        "split.arms: every arm has weight 0, so none could answer: give at least one a weight > 0",
    ),
    ("split.arms[1].weight", 2.5, "split.arms[1].weight: expected an integer, got 2.5"),
    ("split.arms[1].name", "control", "split.arms[1].name: 'control' is already used by arms[0]"),
    (
        "split.arms[1].name",
        "primary",
        "split.arms[1].name: 'primary' is reserved for routes without a split",
    ),
    (
        "split.arms[1].name",
        "new arm",
        "split.arms[1].name: 'new arm' is not a valid arm name"
        " (letters, digits, '_', '-' and '.', starting with a letter or digit,"
        " at most 200 characters)",
    ),
    ("split.arms", [], "split.arms: a split needs at least one arm"),
    (
        "split.arms",
        [{"name": f"a{n}", "target": {"model": "titanic"}, "weight": 1} for n in range(101)],
        "split.arms: at most 100 arms, got 101",
    ),
    ("split.arms[1].weight", 10**30, f"split.arms[1].weight: must be <= 1000000, got {10**30}"),
    ("split.arms[0].target.model", DELETE, "split.arms[0].target: missing required key 'model'"),
    # stickiness
    (
        "split.sticky",
        {"by": "header"},
        "split.sticky.name: by: header needs the name of the header to hash",
    ),
    (
        "split.sticky",
        {"by": "field"},
        "split.sticky.name: by: field needs the name of the field to hash",
    ),
    (
        "split.sticky",
        {"by": "subject", "name": "X-User"},
        "split.sticky.name: only used with by: header or field, not by: subject",
    ),
    (
        "split.sticky.by",
        "cookie",
        "split.sticky.by: 'cookie' is not one of field, header, random, subject",
    ),
    # A header name no client can send never matches: every request would be drawn at random.
    (
        "split.sticky",
        {"by": "header", "name": "X-User "},
        "split.sticky.name: 'X-User ' is not a header name (letters, digits and"
        " !#$%&'*+-.^_`|~, no spaces)",
    ),
    (
        "split.sticky",
        {"by": "header", "name": "x user"},
        "split.sticky.name: 'x user' is not a header name (letters, digits and"
        " !#$%&'*+-.^_`|~, no spaces)",
    ),
    # shadow
    ("shadow[0].percent", 101, "shadow[0].percent: must be between 0 and 100, got 101.0"),
    ("shadow[0].percent", -1, "shadow[0].percent: must be between 0 and 100, got -1.0"),
    (
        "shadow",
        [{"target": {"model": f"shadow{n}"}} for n in range(11)],
        "shadow: at most 10 shadows, got 11",
    ),
    (
        "shadow[0].target",
        {"model": "titanic", "version": "2"},
        "shadow[0].target: titanic version 2 already answers this route; shadow another target",
    ),
    (
        "shadow[1]",
        {"target": {"model": "titanic", "version": "3"}},
        "shadow[1].target: titanic version 3 is mirrored twice",
    ),
    (
        "shadow[0].compare",
        {"kind": "class", "output": "survived", "tolerance": 0.1},
        "shadow[0].compare.tolerance: only applies to kind: numeric",
    ),
    (
        "shadow[0].compare",
        {"kind": "numeric", "output": "probability", "tolerance": -0.1},
        "shadow[0].compare.tolerance: must be >= 0, got -0.1",
    ),
    (
        "shadow[0].compare.kind",
        "exact",
        "shadow[0].compare.kind: 'exact' is not one of class, numeric",
    ),
    # fallback
    (
        "fallback[1]",
        {"model": "titanic_pmml"},
        "fallback[1]: titanic_pmml version (default) is listed twice",
    ),
    ("fallback", "titanic_pmml", "fallback: expected a list, got 'titanic_pmml'"),
    (
        "fallback",
        [{"model": f"fallback{n}"} for n in range(11)],
        "fallback: at most 10 fallbacks, got 11",
    ),
    # budgets
    ("retries", 6, "retries: must be between 0 and 5, got 6"),
    ("retries", -1, "retries: must be between 0 and 5, got -1"),
    ("retries", "two", "retries: expected an integer, got 'two'"),
    ("timeout_s", 0, "timeout_s: must be between 0.001 and 3600 seconds, got 0.0"),
    ("timeout_s", 1e-300, "timeout_s: must be between 0.001 and 3600 seconds, got 1e-300"),
    ("timeout_s", 1e300, "timeout_s: must be between 0.001 and 3600 seconds, got 1e+300"),
    ("timeout_s", float("inf"), "timeout_s: must be between 0.001 and 3600 seconds, got inf"),
    (
        "per_try_timeout_s",
        -1,
        "per_try_timeout_s: must be between 0.001 and 3600 seconds, got -1.0",
    ),
    ("per_try_timeout_s", 6, "per_try_timeout_s: must be <= timeout_s (5.0), got 6.0"),
    ("circuit_breaker.failures", 0, "circuit_breaker.failures: must be >= 1, got 0"),
    (
        "circuit_breaker.open_s",
        0,
        "circuit_breaker.open_s: must be between 0.001 and 3600 seconds, got 0.0",
    ),
    (
        "circuit_breaker.open_s",
        1e300,
        "circuit_breaker.open_s: must be between 0.001 and 3600 seconds, got 1e+300",
    ),
    # names and shape
    (
        "primary.model",
        "titanic/1",
        "primary.model: 'titanic/1' is not a valid model name"
        " (letters, digits, '_', '-' and '.', starting with a letter or digit,"
        " at most 200 characters)",
    ),
    (
        "colour",
        "blue",
        "routes.titanic: unknown key 'colour'; expected one of primary, split, shadow,"
        " fallback, retries, per_try_timeout_s, timeout_s, circuit_breaker, canary",
    ),
    (
        "split.weights",
        [90, 10],
        "split: unknown key 'weights'; expected one of arms, sticky",
    ),
    ("split.7", "seven", "split: keys must be strings"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID_CASES)
def test_invalid_policies_are_refused_naming_the_field_and_the_problem(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_route("titanic", changed(path, value))

    expected = message if message.startswith("routes.") else f"routes.titanic.{message}"
    assert str(refused.value) == expected


def test_without_a_split_the_primary_cannot_also_be_a_shadow_or_a_fallback() -> None:
    raw = {"primary": {"model": "titanic", "version": "1"}}
    with pytest.raises(PolicyError, match=r"routes.titanic.shadow\[0\].target: titanic version 1"):
        parse_route("titanic", {**raw, "shadow": [{"target": {"model": "titanic", "version": 1}}]})
    with pytest.raises(PolicyError, match=r"routes.titanic.fallback\[0\]: .* is the primary"):
        parse_route("titanic", {**raw, "fallback": [{"model": "titanic", "version": 1}]})


def test_with_a_split_the_primary_may_be_mirrored_since_it_no_longer_answers() -> None:
    policy = parse_route("titanic", changed("shadow[0].target", {"model": "titanic"}))
    assert policy.shadow[0].target == Target("titanic")


def test_a_drained_arms_target_may_be_mirrored_since_it_no_longer_answers() -> None:
    """It was refused as "already answers this route": with weight 0 it never does. Raised
    again, it would answer, and the shadow would call it twice for one request."""
    v1, v2 = {"model": "titanic", "version": "1"}, {"model": "titanic", "version": "2"}

    def ab(control: int) -> dict[str, Any]:
        arms = [
            {"name": "control", "target": v1, "weight": control},
            {"name": "treatment", "target": v2, "weight": 100},
        ]
        return {"primary": v1, "split": {"arms": arms}, "shadow": [{"target": v1}]}

    drained = parse_route("titanic", ab(0))
    assert drained.answering_targets == (Target("titanic", "2"),)
    assert Target("titanic", "1") in drained.named_targets  # its breakers stay
    with pytest.raises(PolicyError) as refused:
        parse_route("titanic", ab(90))
    assert str(refused.value) == (
        "routes.titanic.shadow[0].target: titanic version 1 already answers this route; "
        "shadow another target"
    )


def test_route_names_and_the_routes_section_are_checked() -> None:
    with pytest.raises(PolicyError, match=r"^routes.my model: 'my model' is not a valid route"):
        parse_routes({"my model": {}})
    with pytest.raises(PolicyError, match=r"^routes: expected a mapping of route name to policy"):
        parse_routes([{"titanic": {}}])
    with pytest.raises(PolicyError, match=r"^routes.titanic: expected a mapping, got 'titanic'"):
        parse_route("titanic", "titanic")


def test_names_have_at_most_200_characters() -> None:
    longest = "n" + "a" * 199
    assert parse_route(longest, {}).primary == Target(longest)

    with pytest.raises(PolicyError) as refused:
        parse_route(longest + "a", {})
    assert str(refused.value) == (
        f"routes.{'n' + 'a' * 55}...: {'n' + 'a' * 55!r}... (201 characters) is not a valid"
        " route name (letters, digits, '_', '-' and '.', starting with a letter or digit,"
        " at most 200 characters)"
    )
    with pytest.raises(PolicyError, match=r"^routes.titanic.fallback\[0\].model: .* at most 200"):
        parse_route("titanic", {"fallback": [{"model": "m" * 201}]})
    with pytest.raises(PolicyError, match=r"^routes.titanic.primary.version: .* at most 200"):
        parse_route("titanic", {"primary": {"model": "titanic", "version": "1" * 201}})


@pytest.mark.parametrize("name", ["-x", "a b", "\u2603", "x\r\nX-Injected: 1", "a" * 201])
def test_a_default_route_is_refused_for_a_name_no_route_can_have(name: str) -> None:
    with pytest.raises(PolicyError, match=r"is not a valid route name \(letters, digits"):
        default_route(name)


def nested(depth: int) -> object:
    """``[[[...]]]``, ``depth`` lists deep."""
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [40, 600, 100_000])
def test_raw_data_nested_too_deeply_is_refused_before_anything_recurses(depth: int) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_route("titanic", {"shadow": nested(depth)})

    assert str(refused.value) == (
        "routes.titanic: nested too deeply (more than 32 levels of lists and mappings)"
    )


def test_a_yaml_document_that_contains_itself_is_nested_too_deeply() -> None:
    looped = yaml.safe_load("shadow: &loop [*loop]")  # YAML may alias a node inside itself

    with pytest.raises(PolicyError, match="nested too deeply"):
        parse_route("titanic", looped)


CANARY = {"target": {"model": "titanic", "version": "2"}}


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"steps": list(range(1, 102))}, "canary.steps: at most 100 steps, got 101"),
        (
            {"interval_s": 0.5},
            "canary.interval_s: must be between 1 and 604800 seconds, got 0.5",
        ),
        (
            {"interval_s": 1e300},
            "canary.interval_s: must be between 1 and 604800 seconds, got 1e+300",
        ),
    ],
)
def test_canary_steps_and_intervals_are_bounded(canary: dict[str, Any], message: str) -> None:
    raw = {"primary": {"model": "titanic", "version": "1"}, "canary": CANARY | canary}

    with pytest.raises(PolicyError) as refused:
        parse_route("titanic", raw)

    assert str(refused.value) == f"routes.titanic.{message}"


def test_the_largest_policy_within_every_bound_is_accepted() -> None:
    name = "m" * 200
    raw = {
        "split": {
            "arms": [
                {"name": f"a{n}", "target": {"model": name, "version": str(n)}, "weight": 10**6}
                for n in range(100)
            ]
        },
        "shadow": [{"target": {"model": f"s{n}"}} for n in range(10)],
        "fallback": [{"model": f"f{n}"} for n in range(10)],
        "per_try_timeout_s": 0.001,
        "timeout_s": 3600,
        "circuit_breaker": {"failures": 1, "open_s": 3600},
    }

    policy = parse_route(name, raw)

    assert parse_route(name, route_to_dict(policy)) == policy
    assert len(msgspec.json.encode(route_to_dict(policy))) < 64 * 1024  # far below 1 MiB


def test_structs_built_in_code_are_checked_too() -> None:
    with pytest.raises(PolicyError, match=r"^weight: must be >= 0, got -1$"):
        Arm(name="control", target=Target("titanic"), weight=-1)

    policy = parse_route("titanic", EXAMPLE)
    with pytest.raises(PolicyError, match=r"^retries: must be between 0 and 5, got 9$"):
        msgspec.structs.replace(policy, retries=9)


def test_policies_are_immutable_and_targets_can_key_a_dict() -> None:
    policy = parse_route("titanic", EXAMPLE)
    with pytest.raises(AttributeError):
        policy.retries = 3  # type: ignore[misc]
    breakers = {Target("titanic", "1"): "breaker"}
    assert breakers[policy.primary] == "breaker"


ROUND_TRIP_CASES = {
    "full example": EXAMPLE,
    "minimal": {},
    "breaker off": {"circuit_breaker": None},
    "numeric compare, header stickiness": {
        "split": {
            "sticky": {"by": "header", "name": "X-User"},
            "arms": [{"name": "a", "target": {"model": "titanic"}, "weight": 1}],
        },
        "shadow": [
            {
                "target": {"model": "titanic_onnx"},
                "percent": 0.5,
                "compare": {"kind": "numeric", "output": "probability", "tolerance": 0.05},
            }
        ],
    },
}


@pytest.mark.parametrize("raw", ROUND_TRIP_CASES.values(), ids=ROUND_TRIP_CASES.keys())
def test_route_to_dict_round_trips_through_yaml_and_json(raw: dict[str, Any]) -> None:
    policy = parse_route("titanic", raw)
    plain = route_to_dict(policy)

    assert parse_route("titanic", plain) == policy
    assert parse_route("titanic", yaml.safe_load(yaml.safe_dump(plain))) == policy
    assert parse_route("titanic", json.loads(json.dumps(plain))) == policy


def test_route_to_dict_spells_out_effective_values() -> None:
    assert route_to_dict(parse_route("iris", {})) == {
        "primary": {"model": "iris"},
        "shadow": [],
        "fallback": [],
        "retries": 1,
        "timeout_s": 15.0,
        "circuit_breaker": {"failures": 5, "open_s": 10.0},
    }
    assert route_to_dict(parse_route("iris", {"circuit_breaker": None}))["circuit_breaker"] is None


def _yaml_examples(markdown: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", markdown, flags=re.DOTALL)


def test_every_yaml_example_in_the_routing_docs_is_a_valid_policy() -> None:
    examples = _yaml_examples(ROUTING_DOC.read_text())
    assert examples, "docs/routing.md should show its policies as ```yaml blocks"
    for example in examples:
        document = yaml.safe_load(example)
        routes = document.get("routes", document)
        assert parse_routes(routes), example


def test_the_validation_errors_shown_in_the_docs_are_the_real_ones() -> None:
    blocks = re.findall(r"```text\n(.*?)```", ROUTING_DOC.read_text(), flags=re.DOTALL)
    # The block of validation errors: the one whose lines name fields of routes.
    [shown] = [block for block in blocks if block.startswith("routes.")]
    real = {
        message if message.startswith("routes.") else f"routes.titanic.{message}"
        for _, _, message in INVALID_CASES
    }
    for line in shown.splitlines():
        assert line in real, line
