"""What gateway_overhead.py loads: the demo's request, and the variants it compares with the
default gateway and the runtime called directly (see that script's docstring)."""

from __future__ import annotations

MODEL = "titanic"
EVAL_PATH = f"/v1/models/{MODEL}/eval"
METADATA_PATH = f"/v2/models/{MODEL}"
#: The seed single-instance request of the demo (README tour).
EVAL_BODY = '{"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}'
#: The label of each variant in the report.
VARIANTS = {
    "gateway-auth": "gateway, JWT auth on (HS256)",
    "gateway-httpx": "gateway, plain `httpx.AsyncHTTPTransport`",
    "gateway-aiohttp": "gateway, aiohttp directly (the previous default)",
    "gateway-httpx-aiohttp": "gateway, httpx API over aiohttp (httpx-aiohttp)",
    "gateway-sampled": "gateway, 10% of traces sampled (`parentbased_traceidratio`)",
    "gateway-exported": "gateway, every span exported (OTLP/HTTP to a stand-in collector)",
    "proxy-floor": "floor: a bare proxy on the same stack (not driftgate, see the script)",
    "runtime-pool": "runtime directly, every model call in the thread pool",
    "runtime-uvloop": "runtime directly, on uvloop (`--loop uvloop`, the default before)",
}
#: The standard OpenTelemetry sampler variables of the ``gateway-sampled`` variant.
SAMPLED_ENV = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
#: Variants that are runtimes, not gateways (compared with the direct runtime only): the
#: environment and the extra arguments of each.
RUNTIME_VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "runtime-pool": ({"DRIFTGATE_INLINE_INFERENCE_MAX_MS": "0"}, []),
    "runtime-uvloop": ({}, ["--loop", "uvloop"]),
}
