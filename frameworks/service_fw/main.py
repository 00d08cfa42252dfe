"""``mensa service``: the service framework (Marathon's /v2 API on --http-port, 8080 by default).

    mensa service --master 127.0.0.1:5050 --work-dir /var/lib/mensa/service
    mensa service --master zk://zk1:2181/mensa --zk zk://zk1:2181/mensa-service --work-dir DIR

Standalone, the state (apps, their versions, deployments, instances) lives in
``<work-dir>/state`` (one JSON file per record) and the framework id in
``<work-dir>/framework_id``. With ``--zk`` both live in ZooKeeper under the given path and
several instances elect a leader; the others redirect the API to it. SIGINT/SIGTERM stop the
instance without tearing the framework down: its tasks keep running and the next instance (or
the new leader) takes them over, reconciling before it acts. Exit status: 0 after a signal, 1
when the instance had to stop, 2 for bad flags.
"""

from __future__ import annotations

import argparse

from mensa.frameworks.host_cli import add_host_arguments, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_arguments(parser, command="service", port=8080)


def run(args: argparse.Namespace) -> int:
    from mensa.frameworks.service_fw.service import ServiceOptions, ServiceService

    return serve(args, ServiceOptions, ServiceService, command="service")
