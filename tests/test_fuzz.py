"""A seeded sample of the mutation fuzzer (scripts/fuzz.py): load -> check -> inspect -> save ->
reload -> read every tensor, on mutated real models with subgraphs, functions and external data.
Every try ends in a graphsurgery error or a model that goes through; none in another exception,
an abort, a hang, or a saved model that check() rejects. The long run is the script itself."""

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).parent.parent / "scripts" / "fuzz.py"
TRIES = 1000


def _fuzz():
    spec = importlib.util.spec_from_file_location("graphsurgery_fuzz", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeded_mutations_end_only_in_graphsurgery_errors_or_sound_models():
    fuzz = _fuzz()
    results = fuzz.run(TRIES, base_seed=1, jobs=2, timeout=60)
    assert len(results) == TRIES
    outcomes = {r["outcome"] for r in results}
    bad = [r for r in results if r["outcome"] in fuzz.BAD]
    assert not bad, fuzz.report(results)
    assert outcomes == {"accepted", "refused"}  # the sample reaches both ends of the pipeline


def test_the_fuzzer_counts_a_worker_that_dies_as_an_abort(tmp_path):
    # The classification itself: a worker that dies (here at start, its seeds missing) is an abort.
    fuzz = _fuzz()
    runner = fuzz.Runner(1, 30, str(tmp_path / "missing-seeds.pickle"))
    seed_list = fuzz.seeds()
    result = runner.run(0, seed_list)
    assert result["outcome"] == "abort"
    runner.close()
