"""The name of this process among the replicas that share one queue."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

REPLICA_ENV = "FORWARDER_REPLICA_ID"


def replica_id(environ: Mapping[str, str] | None = None) -> str:
    """``$FORWARDER_REPLICA_ID``, else ``<host name>-<process id>``.

    In Kubernetes the host name is the pod's name, so the default already
    tells replicas apart in logs and in ``forwarder_replica_info``; the
    process id separates replicas on one host.
    """
    env = os.environ if environ is None else environ
    return env.get(REPLICA_ENV) or f"{socket.gethostname()}-{os.getpid()}"
