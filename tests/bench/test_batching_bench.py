"""bench/batching.py without wrk: the twin repository it serves. The load itself needs wrk and
is not run here; its section of BENCHMARKS.md is written by bench/benchmarks_doc.py
(test_benchmarks_doc.py)."""

from __future__ import annotations

from pathlib import Path

from runtime.config import load_model_config
from tests.bench.test_drift_benches import load

batching = load("batching")


def test_every_model_gets_an_unbatched_copy_and_a_batched_twin_with_its_config_kept(
    tmp_path: Path,
) -> None:
    source = tmp_path / "demo"
    (source / "iris" / "1").mkdir(parents=True)
    (source / "iris" / "1" / "iris.h5").write_bytes(b"weights")
    (source / "iris" / "config.yaml").write_text(
        "labels: {stable: 1}\nbatching: {max_batch_size: 2}\n"  # as built: batching on
    )
    (source / "digits" / "1").mkdir(parents=True)  # not benchmarked: not copied

    batching.batched_repository(source, tmp_path / "models", ["iris"], {"max_batch_size": 8})

    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["iris", "iris_batched"]
    plain = load_model_config(tmp_path / "models" / "iris")
    twin = load_model_config(tmp_path / "models" / "iris_batched")
    assert plain.batching is None
    assert twin.batching is not None and twin.batching.max_batch_size == 8
    assert twin.labels == plain.labels == {"stable": 1}
    assert (tmp_path / "models" / "iris_batched" / "1" / "iris.h5").read_bytes() == b"weights"
