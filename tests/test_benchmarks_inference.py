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
