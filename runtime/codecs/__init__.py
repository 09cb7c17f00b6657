"""Codecs: the three HTTP dialects over one dialect-neutral core.

Each codec is pure (bytes and dicts in, ``InferenceRequest``/``InferenceResponse`` out, no I/O,
no web framework) and comes in a ``decode_*`` / ``encode_*`` pair. A decoder returns the
request plus a small *form* object recording how the client spoke (rows or columns, single
instance, binary outputs wanted...), and the matching encoder answers in that same form::

    request, form = oip.decode_infer_request(body, header_length)   # Open Inference Protocol v2
    request, form = tfserving.decode_predict(body, metadata)         # TF-Serving REST
    request, form = simple.decode_eval(body, metadata)               # the simple eval API
    inputs = runtime.validation.validate_inputs(metadata, request.inputs)
    ...
    body, headers = oip.encode_infer_response(response, form)
    payload = tfserving.encode_predict(response, form)
    payload = simple.encode_eval(response, form)

``runtime.codecs.json`` holds the strict JSON helpers they share. Every error a client can
cause is a ``runtime.errors.BadRequest`` (or another ``InferenceServerError``) whose message
names the input and says what was expected and what arrived. The wire formats are described
for users in ``docs/api.md``.
"""
