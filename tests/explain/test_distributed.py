"""The engine over Dask arrays: the same numbers as in memory, on a LocalCluster too."""

import dask.array as da
import numpy as np
import pytest

from scxl.explain import attribute_dask, attribute_modules


@pytest.fixture
def case(make_mlp, expr):
    mods = [make_mlp(30, 8, 3, seed=s, double=False) for s in range(3)]
    x = expr(90, 30, seed=1, dtype=np.float32)
    t = np.random.default_rng(2).integers(0, 3, 90)
    return mods, x, t


@pytest.mark.parametrize("kw", [
    {}, {"references": "zero"}, {"references": "universal", "n_baselines": 4},
    {"references": "sample", "n_baselines": 3}, {"references": "rest_mean"},
    {"references": "marginal", "n_baselines": 2, "smoothgrad": (2, 0.1), "n_repeats": 2},
])
def test_dask_blocks_equal_in_memory(case, kw):
    from scxl.explain import AttributionConfig

    mods, x, t = case
    ref = attribute_modules(mods, x, t, "deeplift_shap" if "n_baselines" in kw else "deeplift", progress=False, **kw)
    res, cells = attribute_dask(mods, da.from_array(x, chunks=(25, 30)), t, ref.method, config=AttributionConfig(**kw))
    np.testing.assert_allclose(res.member_group_means, ref.member_group_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.group_means, ref.group_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.presence_group_means, ref.presence_group_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cells.compute(), ref.attributions, rtol=1e-5, atol=1e-6)
    assert res.params["n_blocks"] == 4


def test_local_cluster(case):
    import distributed
    mods, x, t = case
    ref = attribute_modules(mods, x, t, "deeplift", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res, cells = attribute_dask(mods, da.from_array(x, chunks=(30, 30)), t, "deeplift", client=client)
        np.testing.assert_allclose(res.group_means, ref.group_means, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(cells), ref.attributions, rtol=1e-5, atol=1e-6)


def test_wait_for_returns_at_the_first_failed_task():
    """As client.gather: one task's error is raised at once, without waiting for the others to finish."""
    import threading

    from scxl.explain._distributed import wait_for

    class Future:
        def __init__(self, status):
            self.status = status

        def done(self):
            return self.status != "pending"

    slow, failed = Future("pending"), Future("pending")
    threading.Timer(0.05, lambda: setattr(failed, "status", "error")).start()
    waiting = threading.Thread(target=wait_for, args=([slow, failed],), kwargs={"poll": 0.01}, daemon=True)
    waiting.start()
    waiting.join(timeout=10)  # would never return if it waited for `slow`
    assert not waiting.is_alive(), "wait_for kept waiting after a task had failed"
    assert slow.status == "pending" and failed.status == "error"
    done = [Future("finished"), Future("finished")]
    wait_for(done, poll=0.01)
