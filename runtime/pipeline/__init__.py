"""The ``pipeline`` model format: a ``pipeline.yaml`` chaining processors and models.

A pipeline is served like any other model: the repository finds ``pipeline.yaml`` in a
version folder and loads it with ``PipelineBackend`` (``runtime.backends.FORMATS``). The file
declares the pipeline's inputs, a list of steps and its outputs; each step reads named
tensors and writes named tensors, and later steps refer to them by name::

    inputs:
      - {name: age, datatype: FP32, shape: [-1, 1], nullable: true}
    steps:
      - name: fill_age
        processor: impute                  # a built-in name, or "package.module:Class"
        inputs: [age]
        outputs: [age_filled]
        params: {value: 28.0}
      - name: classifier
        model: classifier.onnx             # any format, relative to this folder
        inputs: {float_input: age_filled}  # model input -> pipeline tensor
        outputs: {probabilities: probs}    # model output -> pipeline tensor
    outputs: [probs]

``spec`` reads and checks the file's structure and data flow; ``backend`` builds and runs the
steps. Errors name the file, the step and the field. Reference: ``docs/pipelines.md``.
"""

from __future__ import annotations

from runtime.pipeline.backend import PipelineBackend, PipelineStepError
from runtime.pipeline.spec import PipelineConfigError, PipelineSpec, StepSpec, parse_pipeline

__all__ = [
    "PipelineBackend",
    "PipelineConfigError",
    "PipelineSpec",
    "PipelineStepError",
    "StepSpec",
    "parse_pipeline",
]
