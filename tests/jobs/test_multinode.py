"""A whole job on a Ray cluster of three nodes (``ray.cluster_utils.Cluster``: a head and
two workers on this machine): the work spreads over the nodes and the output equals a
local run's."""

import json
import subprocess
import sys
import textwrap

from tests.helpers import REPO


def test_job_runs_on_several_nodes_with_the_same_output(make_job, sample_corpus, tmp_path):
    from pipeline import run_job

    local = tmp_path / "local"
    snapshot = run_job(make_job(sample_corpus, local)).snapshot
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(make_job(sample_corpus, tmp_path / "cluster")))
    # Its own process: the test session already runs a local Ray, and a driver joins one cluster.
    script = textwrap.dedent(f"""
        import json
        from ray.cluster_utils import Cluster
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "object_store_memory": 150 * 2**20}})
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
        cluster.wait_for_nodes()
        from pipeline import run_job
        result = run_job(json.loads(open({str(spec_path)!r}).read()), address=cluster.address)
        import ray
        print("NODES", len(ray.nodes()))
        print("BALANCED", result.report["balance"]["ok"])
        ray.shutdown()
        cluster.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NODES 3" in done.stdout and "BALANCED True" in done.stdout
    markers = [
        json.loads(p.read_text()) for p in (tmp_path / "cluster" / "work" / "annotate" / "_markers").glob("*.json")
    ]
    assert len(markers) == 4
    assert len({m["node"] for m in markers}) >= 2  # shards were annotated on more than one node
    assert json.loads((tmp_path / "cluster" / "latest.json").read_text())["snapshot"] == snapshot
    tokens = sorted((local / "snapshots" / snapshot / "tokens").iterdir())
    assert tokens
    for path in tokens:
        assert (tmp_path / "cluster" / "snapshots" / snapshot / "tokens" / path.name).read_bytes() == path.read_bytes()
