"""nginx in front of pallet replicas on 127.0.0.1: a replica killed under load costs no request."""

import os
import threading
import time

import httpx
import pytest

from pallet.demo import train_demo_models
from pallet.deploy.local import LocalCluster, nginx_config
from pallet.errors import PalletError
from pallet.net import free_port
from pallet.store import Store

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("scale") / "home")
    train_demo_models(store, torch_models=())
    return {"PALLET_HOME": str(store.home), "PALLET_DB_URL": store.db_url}


def test_nginx_config_balances_retries_and_keeps_alive():
    config = nginx_config("127.0.0.1:8080", ["127.0.0.1:9001", "127.0.0.1:9002"], max_body_mb=16)
    assert "least_conn;" in config and "keepalive 64;" in config
    assert "proxy_next_upstream error http_502 non_idempotent;" in config and "http_503" not in config
    assert config.count("server 127.0.0.1:900") == 2 and "client_max_body_size 16m;" in config
    assert "$host" in config and "$$" not in config


def test_a_replica_killed_under_steady_load_costs_no_request(home):
    with LocalCluster(["iris"], replicas=3, port=free_port(), env=home) as cluster:
        results, stop = [], threading.Event()

        def client():
            with httpx.Client(base_url=cluster.url, timeout=10) as http:
                while not stop.is_set():  # bounded: the main thread stops it after a few seconds
                    try:
                        results.append(http.post("/v1/models/iris:predict", json=ROW).status_code)
                    except httpx.HTTPError as e:
                        results.append(type(e).__name__)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = len(results)
        cluster.kill_replica(0)
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(timeout=15)
        after = len(results) - before
    failed = [r for r in results if r != 200]
    assert before > 20 and after > 20, (before, after)  # load before and after the kill
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"


def test_up_refuses_a_busy_port_and_no_replicas(home):
    cluster = LocalCluster(["iris"], replicas=1, port=free_port(), env=home)
    with cluster, pytest.raises(PalletError, match="cannot listen on 127.0.0.1"):
        LocalCluster(["iris"], replicas=1, port=cluster.port, env=home).start()
    with pytest.raises(PalletError, match="--replicas must be 1 or more"):
        LocalCluster(["iris"], replicas=0)
    assert not os.path.exists(cluster.prefix)  # its nginx prefix is cleaned up


def test_grpc_through_nginx_reaches_every_replica(home):
    import numpy as np
    import tritonclient.grpc as triton_grpc

    grpc_port = free_port()
    with LocalCluster(["iris"], replicas=2, port=free_port(), env=home, grpc_port=grpc_port) as cluster:
        config = (cluster.prefix / "nginx.conf").read_text()
        assert f"listen 127.0.0.1:{grpc_port} http2;" in config and "grpc_pass grpc://pallet_grpc;" in config
        assert all(f"server 127.0.0.1:{p} " in config for p in cluster.grpc_ports)
        rows = triton_grpc.InferInput("input", [1, 4], "FP64")
        rows.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]]))
        with triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            labels = [client.infer("iris", [rows]).as_numpy("label").tolist() for _ in range(20)]
        served = {}
        for port in cluster.ports:  # each replica counts the gRPC requests it answered
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            served[port] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                               if line.startswith("pallet_requests_total{") and 'protocol="grpc"' in line)
    assert labels == [[0]] * 20
    assert sum(served.values()) == 20 and all(count > 0 for count in served.values()), served
