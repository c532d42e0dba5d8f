import json

from benchmarks import inference


def test_inference_benchmark_writes_well_formed_results(tiny_runs):
    result = inference.run(str(tiny_runs["coarse"]), str(tiny_runs["fine"]), num_series=1)
    assert result["series_timed"] == 1
    for backend in ("jax", "onnxruntime"):
        timing = result["results"][backend]
        assert 0 < timing["cascade_s_median"] <= timing["series_s_median"]
    for checks in result["export_parity"].values():
        assert all(diff < 1e-3 and agreement >= 0.999 for diff, agreement in checks.values())
    json.dumps(result)
    assert "| onnxruntime |" in inference.markdown(result)


def test_inference_part_is_skipped_without_runs(tmp_path):
    result = inference.run_or_skip("", "", 1, demo=tmp_path / "demo")
    assert result["skipped"].startswith("no trained runs: pass --coarse=RUN --fine=RUN")
    failed = inference.run_or_skip(str(tmp_path / "no_coarse"), str(tmp_path / "no_fine"), 1)
    assert failed["skipped"].startswith("failed: ")
