"""Before any training on a Ray cluster: the results folder must be storage every node sees.

Each worker writes its record, checkpoints and log into the results folder on the node it runs on, and the driver
reads them there (resume, the records of workers that died). Since Ray 2.7 nothing syncs files between nodes, so a
results path that is a local disk on some node loses that node's results. The probe runs one small task on every
alive node (node-affinity scheduling); each writes a file into the results folder, and the driver reads it back.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError

PROBE_TIMEOUT_S = 60.0  # a node that has not answered by then is named as unhealthy


def probe_node(results: str, token: str) -> dict[str, Any]:
    """Runs on one node: write `token` into `<results>/<probe file>`; returns the file name, or why it failed.

    The fault `unshared_results` (tests) writes to a folder of this node alone instead, as a node would whose
    results path is a local disk.
    """
    import ray

    from segbench import faults

    name = f".segbench-probe-{ray.get_runtime_context().get_node_id()[:12]}-{token}"
    folder = Path(results)
    if faults.value("unshared_results"):
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="segbench-unshared-"))
    try:
        (folder / name).write_text(token, encoding="utf-8")
    except OSError as exc:
        return {"name": name, "error": exc.strerror or str(exc)}
    finally:
        if folder != Path(results):
            shutil.rmtree(folder, ignore_errors=True)
    return {"name": name, "error": None, "host": socket.gethostname()}


def describe_node(node: dict[str, Any]) -> str:
    """A node as a person finds it again: host name, IP address and the start of its Ray node id."""
    return f"{node['NodeManagerHostname']} ({node['NodeManagerAddress']}, Ray node {node['NodeID'][:8]})"


def check_shared_storage(results: Path) -> int:
    """Raise ConfigError naming the first node that cannot share `results` with this machine; returns the number
    of nodes probed. `results` must exist here (runner.check_writable)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    results = Path(results).resolve()
    token = uuid.uuid4().hex
    probe = ray.remote(num_cpus=0, max_retries=0)(probe_node)
    nodes = {
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            str(results), token): node
        for node in ray.nodes() if node["Alive"]
    }
    ready, late = ray.wait(list(nodes), num_returns=len(nodes), timeout=PROBE_TIMEOUT_S)
    problems = [f"{describe_node(nodes[ref])} did not answer the storage probe within {PROBE_TIMEOUT_S:.0f} s; "
                f"check it with `ray status` or take it out of the cluster" for ref in late]
    for ref in late:
        ray.cancel(ref, force=True)
    for ref in ready:
        problem = _check_answer(ref, results, token)
        if problem:
            problems.append(f"{describe_node(nodes[ref])} {problem}")
    if problems:
        others = f" (and {len(problems) - 1} more node(s) have a problem too)" if len(problems) > 1 else ""
        raise ConfigError(f"node {problems[0]}{others}.")
    return len(nodes)


def _check_answer(ref: Any, results: Path, token: str) -> str | None:
    """What is wrong with one node's probe (as the rest of a sentence that starts with the node), or None."""
    import ray

    fix = f"mount the same shared folder (NFS or similar) at {results} on every node, or choose one with --results"
    try:
        answer = ray.get(ref)
    except ray.exceptions.RayError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        return f"could not run the storage probe ({reason}); check the node with `ray status`"
    if answer["error"]:
        return f"cannot write the results folder {results} ({answer['error']}); {fix}"
    path = results / answer["name"]
    try:
        seen = path.read_text(encoding="utf-8")
    except OSError:
        seen = None
    path.unlink(missing_ok=True)
    if seen != token:
        return (f"writes to {results} but its file does not appear there on this machine, so the folder is not "
                f"shared storage; {fix}")
    return None
