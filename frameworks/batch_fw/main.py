"""``mensa batch``: the batch job framework (Metronome's /v1 API on --http-port).

    mensa batch --master 127.0.0.1:5050 --work-dir /var/lib/mensa/batch
    mensa batch --master zk://zk1:2181/mensa --zk zk://zk1:2181/mensa-batch --work-dir DIR

Standalone, the state lives in ``<work-dir>/state`` (one JSON file per record) and the framework
id in ``<work-dir>/framework_id``. With ``--zk`` both live in ZooKeeper under the given path and
several instances elect a leader; the others redirect the API to it. SIGINT/SIGTERM stop the
instance without tearing the framework down: its tasks keep running and the next instance (or
the new leader) takes them over. Exit status: 0 after a signal, 1 when the instance had to stop
(its state could not be written, leadership was lost, the framework was removed), 2 for bad flags.
"""

from __future__ import annotations

import argparse

from mensa.frameworks.host_cli import add_host_arguments, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_arguments(parser, command="batch", port=9000)


def run(args: argparse.Namespace) -> int:
    from mensa.frameworks.batch_fw.service import BatchOptions, BatchService

    return serve(args, BatchOptions, BatchService, command="batch")
