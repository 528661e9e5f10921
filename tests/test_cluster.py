"""unet_tf.cluster: scheduler names, worker thread pinning, an unreachable address."""

import pytest

pytest.importorskip("distributed")

from unet_tf import cluster  # noqa: E402
from unet_tf.errors import UserInputError  # noqa: E402


def test_parse_scheduler():
    assert cluster.parse_scheduler("local:3") == ("local", 3)
    assert cluster.parse_scheduler(" tcp://10.0.0.5:8786 ") == ("address", "tcp://10.0.0.5:8786")
    assert cluster.parse_scheduler("node7:8786") == ("address", "node7:8786")
    for bad in ("local:0", "local:x", "somewhere"):
        with pytest.raises(UserInputError, match="`scheduler`"):
            cluster.parse_scheduler(bad)


def test_local_cluster_pins_worker_threads():
    with cluster.dask_client("local:1", threads_per_worker=1, log=lambda line: None) as client:
        env = client.submit(lambda: {k: __import__("os").environ.get(k) for k in cluster.THREAD_VARIABLES}).result()
    assert env == {name: "1" for name in cluster.THREAD_VARIABLES}


def test_unreachable_address_is_one_line(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(UserInputError, match=r"tcp://127\.0\.0\.1:9: no Dask scheduler answered"):
        with cluster.dask_client("tcp://127.0.0.1:9", log=lambda line: None):
            pass
