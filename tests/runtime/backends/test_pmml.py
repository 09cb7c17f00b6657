"""The PMML backend: pypmml (PMML4S) on the process's one JPype JVM."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from runtime.backends import create_backend
from runtime.backends.pmml import PmmlBackend
from runtime.errors import BackendUnavailable, BadRequest

TITANIC_PMML = """<?xml version="1.0" encoding="UTF-8"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <Header description="titanic-like logistic regression for the backend tests"/>
  <DataDictionary numberOfFields="5">
    <DataField name="sex" optype="categorical" dataType="string">
      <Value value="female"/>
      <Value value="male"/>
    </DataField>
    <DataField name="fare" optype="continuous" dataType="double"/>
    <DataField name="pclass" optype="continuous" dataType="integer"/>
    <DataField name="alone" optype="categorical" dataType="boolean">
      <Value value="true"/>
      <Value value="false"/>
    </DataField>
    <DataField name="survived" optype="categorical" dataType="integer">
      <Value value="0"/>
      <Value value="1"/>
    </DataField>
  </DataDictionary>
  <RegressionModel functionName="classification" normalizationMethod="logit">
    <MiningSchema>
      <MiningField name="sex"/>
      <MiningField name="fare" missingValueReplacement="14.45"/>
      <MiningField name="pclass"/>
      <MiningField name="alone"/>
      <MiningField name="survived" usageType="target"/>
    </MiningSchema>
    <Output>
      <OutputField name="survived" optype="categorical" dataType="integer"
                   feature="predictedValue"/>
      <OutputField name="probability" optype="continuous" dataType="double"
                   feature="probability" value="1"/>
    </Output>
    <RegressionTable intercept="0.5" targetCategory="1">
      <NumericPredictor name="fare" coefficient="0.02"/>
      <NumericPredictor name="pclass" coefficient="-0.7"/>
      <CategoricalPredictor name="sex" value="female" coefficient="2.5"/>
      <CategoricalPredictor name="sex" value="male" coefficient="0"/>
      <CategoricalPredictor name="alone" value="true" coefficient="-0.4"/>
      <CategoricalPredictor name="alone" value="false" coefficient="0"/>
    </RegressionTable>
    <RegressionTable intercept="0" targetCategory="0"/>
  </RegressionModel>
</PMML>
"""


@pytest.fixture(scope="module")
def titanic_pmml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pmml") / "titanic.pmml"
    path.write_text(TITANIC_PMML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def default_outputs_pmml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model without an ``Output`` element: PMML4S names the outputs itself."""
    start, end = TITANIC_PMML.index("    <Output>"), TITANIC_PMML.index("</Output>\n") + 10
    path = tmp_path_factory.mktemp("pmml") / "default_outputs.pmml"
    path.write_text(TITANIC_PMML[:start] + TITANIC_PMML[end:], encoding="utf-8")
    return path


def titanic_probability(sex: str, fare: float, pclass: int, alone: bool) -> float:
    """What TITANIC_PMML computes, written out independently of PMML4S."""
    logit = 0.5 + 0.02 * fare - 0.7 * pclass + (2.5 if sex == "female" else 0.0)
    logit += -0.4 if alone else 0.0
    return 1.0 / (1.0 + math.exp(-logit))


ROWS = [("female", 10.0, 1, True), ("male", 50.0, 3, False), ("male", 7.25, 2, True)]


def columns(rows) -> dict[str, np.ndarray]:
    sex, fare, pclass, alone = zip(*rows, strict=True)
    return {
        "sex": np.array(sex, dtype=object).reshape(-1, 1),
        "fare": np.array(fare, dtype=np.float64).reshape(-1, 1),
        "pclass": np.array(pclass, dtype=np.int64).reshape(-1, 1),
        "alone": np.array(alone, dtype=np.bool_).reshape(-1, 1),
    }


@pytest.fixture(scope="module")
def titanic(titanic_pmml) -> PmmlBackend:
    backend = PmmlBackend({})
    backend.load(titanic_pmml)
    return backend


def test_registry_builds_the_backend_without_a_jvm() -> None:
    assert isinstance(create_backend("pmml"), PmmlBackend)


@pytest.mark.java
def test_inputs_are_one_column_per_field(titanic) -> None:
    specs = {spec.name: spec for spec in titanic.metadata().inputs}
    assert list(specs) == ["sex", "fare", "pclass", "alone"]
    assert {name: (s.datatype, s.shape) for name, s in specs.items()} == {
        "sex": ("BYTES", (-1, 1)),
        "fare": ("FP64", (-1, 1)),
        "pclass": ("INT64", (-1, 1)),
        "alone": ("BOOL", (-1, 1)),
    }
    assert specs["sex"].allowed_values == ("female", "male")
    assert specs["fare"].allowed_values is None
    assert specs["alone"].allowed_values is None  # BOOL says it all
    # Only fare has a missingValueReplacement.
    assert [name for name, s in specs.items() if s.nullable] == ["fare"]


@pytest.mark.java
def test_outputs_follow_the_output_element(titanic) -> None:
    meta = titanic.metadata()
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("survived", "INT64", (-1, 1)),
        ("probability", "FP64", (-1, 1)),
    ]
    assert meta.platform == "pmml"
    assert meta.extra["function_name"] == "classification"
    assert meta.extra["target"] == "survived"


@pytest.mark.java
def test_predictions_match_the_regression_written_out(titanic) -> None:
    outputs = titanic.predict(columns(ROWS))
    expected = [titanic_probability(*row) for row in ROWS]
    assert outputs["probability"].shape == (3, 1)
    assert outputs["probability"].dtype == np.float64
    np.testing.assert_allclose(outputs["probability"][:, 0], expected, rtol=1e-12)
    assert outputs["survived"].dtype == np.int64
    assert outputs["survived"][:, 0].tolist() == [int(p > 0.5) for p in expected]


@pytest.mark.java
def test_nan_is_missing_and_takes_the_replacement(titanic) -> None:
    inputs = columns([("female", math.nan, 1, False), ("female", 14.45, 1, False)])
    probability = titanic.predict(inputs)["probability"][:, 0]
    assert probability[0] == probability[1]


@pytest.mark.java
def test_text_may_arrive_as_bytes(titanic) -> None:
    inputs = columns(ROWS[:1])
    inputs["sex"] = np.array([[b"female"]], dtype=object)
    np.testing.assert_allclose(
        titanic.predict(inputs)["probability"][0, 0], titanic_probability(*ROWS[0])
    )


@pytest.mark.java
def test_an_invalid_category_is_a_bad_request_naming_the_row(titanic) -> None:
    inputs = columns([ROWS[0], ("unknown", 10.0, 1, True)])
    with pytest.raises(BadRequest, match="no 'survived' for row 1"):
        titanic.predict(inputs)


@pytest.mark.java
def test_an_empty_batch_answers_empty_columns(titanic) -> None:
    outputs = titanic.predict({name: array[:0] for name, array in columns(ROWS).items()})
    assert outputs["probability"].shape == (0, 1)


@pytest.mark.java
def test_worker_threads_share_the_model(titanic) -> None:
    inputs = columns(ROWS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: titanic.predict(inputs)["probability"], range(16)))
    for result in results:
        np.testing.assert_array_equal(result, results[0])


@pytest.mark.java
def test_a_second_model_reuses_the_jvm(titanic, default_outputs_pmml) -> None:
    from pypmml import PMMLContext

    second = PmmlBackend({})
    second.load(default_outputs_pmml)
    assert PMMLContext.gateway() == "JPype"
    names = [spec.name for spec in second.metadata().outputs]
    assert names == ["predicted_survived", "probability", "probability_0", "probability_1"]
    datatypes = [spec.datatype for spec in second.metadata().outputs]
    assert datatypes == ["INT64", "FP64", "FP64", "FP64"]
    outputs = second.predict(columns(ROWS))
    np.testing.assert_allclose(
        outputs["probability_1"], titanic.predict(columns(ROWS))["probability"]
    )
    second.unload()
    # The first model still answers: unloading never touches the shared JVM.
    assert titanic.predict(columns(ROWS[:1]))["survived"].shape == (1, 1)


@pytest.mark.java
def test_unload_is_idempotent(titanic_pmml) -> None:
    backend = PmmlBackend({})
    backend.load(titanic_pmml)
    backend.unload()
    backend.unload()
    with pytest.raises(RuntimeError, match="before load"):
        backend.predict(columns(ROWS))


REPO_ROOT = Path(__file__).resolve().parents[3]
SIGTERM_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from runtime.backends.pmml import PmmlBackend
caught = []
signal.signal(signal.SIGTERM, lambda *args: caught.append("python"))
PmmlBackend({}).load(Path(sys.argv[1]))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print(caught)
"""


@pytest.mark.java
def test_the_jvm_leaves_sigterm_to_python(titanic_pmml) -> None:
    # Without -Xrs the JVM replaces the server's SIGTERM handler and exits with no cleanup.
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_SCRIPT, str(titanic_pmml)],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "['python']"), done.stderr


def test_missing_java_names_what_to_install(titanic_pmml, monkeypatch, tmp_path) -> None:
    # The check runs before pypmml touches the JVM, so a JVM other tests started survives it.
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(BackendUnavailable, match="apt-get install default-jre-headless"):
        PmmlBackend({}).load(titanic_pmml)


def test_java_home_wins_over_path(monkeypatch, tmp_path) -> None:
    from runtime.backends.pmml import find_java

    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert find_java() == java


@pytest.mark.parametrize("module", ["pypmml", "jpype"])
def test_missing_python_packages_name_the_extra(titanic_pmml, block_import, module) -> None:
    block_import(module)
    with pytest.raises(BackendUnavailable, match=rf"'{module}'.*driftgate\[pmml\]"):
        PmmlBackend({}).load(titanic_pmml)
