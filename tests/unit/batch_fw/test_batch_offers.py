"""Offers: what fits where (cpus/mem/disk, reserved resources, placement constraints), one Launch per
used offer, Decline with its filter, Suppress/Revive, the TaskInfo built, and why a run waits."""

from __future__ import annotations

from batch_harness import (
    Decline,
    Harness,
    Launch,
    Persist,
    Revive,
    Suppress,
    job_doc,
    kinds,
    launched,
    launched_ids,
    offer,
    only,
)

from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources


def test_persist_comes_before_launch_and_unused_offers_are_declined() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    out = h.offers(offer("o1"), offer("o2", "a2"))
    assert kinds(out) == ["Persist", "Launch", "Decline", "Suppress"]
    persist = out[0]
    assert isinstance(persist, Persist) and persist.kind == "run" and persist.key == f"hello.{run.id}"
    assert persist.doc["slots"][0]["attempts"][0]["id"] == f"hello.{run.id}.0.1"  # the task id is stored
    launch, decline = out[1], out[2]
    assert isinstance(launch, Launch) and launch.offer_id == "o1"
    assert isinstance(decline, Decline) and decline.offer_ids == ("o2",)
    assert decline.refuse_seconds == launch.refuse_seconds == 300.0  # nothing waits any more


def test_suppress_when_nothing_waits_and_revive_when_something_does() -> None:
    h = Harness()
    assert only(h.put(job_doc()), Suppress) == [Suppress()]
    h.start()
    assert only(h.sent, Revive) == [Revive()]
    assert h.engine.wants_offers()
    out = h.offers(offer(resources="cpus:0.5;mem:64"))  # too small: still waiting
    assert only(out, Decline) == [Decline(("o1",), 5.0)] and not only(out, Suppress)
    out = h.offers(offer("o2"))
    assert only(out, Suppress) == [Suppress()] and not h.engine.wants_offers()
    assert only(h.offers(offer("o3")), Decline) == [Decline(("o3",), 300.0)]
    h.start()
    assert only(h.sent[-2:], Revive) == [Revive()]


def test_as_many_tasks_as_fit_are_packed_across_offers() -> None:
    h = Harness()
    h.put(job_doc("arr", parallelism=10, completions=10, run={"cpus": 1, "mem": 100, "disk": 10}))
    h.start("arr")
    out = h.offers(offer("o1", "a1", "cpus:3;mem:1000;disk:100"),
                   offer("o2", "a2", "cpus:2.5;mem:150;disk:100"),
                   offer("o3", "a3", "cpus:8;mem:8000;disk:15"))
    per_offer = {c.offer_id: len(c.tasks) for c in only(out, Launch)}
    assert per_offer == {"o1": 3, "o2": 1, "o3": 1}  # cpus-, mem- and disk-bound
    assert only(out, Decline) == []
    task = launched(out)[0]
    assert Resources.from_proto(task.resources) == Resources.parse("cpus:1;mem:100;disk:10")
    assert task.agent_id.value == "a1"


def test_reserved_resources_of_the_offer_are_used_first() -> None:
    h = Harness()
    h.put(job_doc(run={"cpus": 2, "mem": 100}))
    h.start()
    out = h.offers(offer(resources="cpus(batch):1;cpus:4;mem(batch):50;mem:1000", role="batch"))
    [task] = launched(out)
    expected = Resources.parse("cpus(batch):1;cpus:1;mem(batch):50;mem:50")
    assert Resources.from_proto(task.resources) == expected
    assert {r.allocation_info.role for r in task.resources} == {"batch"}


def test_constraints_on_hostname_and_attributes() -> None:
    constraints = [{"attribute": "rack", "operator": "IS", "value": "r2"},
                   {"attribute": "hostname", "operator": "LIKE", "value": "node-[0-9]+"},
                   {"attribute": "gpu", "operator": "UNLIKE", "value": "none|old"},
                   {"attribute": "gen", "operator": "EQ", "value": "3"}]
    h = Harness()
    h.put(job_doc(run={"placement": {"constraints": constraints}}))
    h.start()
    out = h.offers(
        offer("wrong-rack", "a1", hostname="node-1", attributes="rack:r1;gen:3"),
        offer("bad-host", "a2", hostname="node-1.x", attributes="rack:r2;gen:3"),  # LIKE is a full match
        offer("old-gpu", "a3", hostname="node-3", attributes="rack:r2;gpu:old;gen:3"),
        offer("gen-2", "a4", hostname="node-4", attributes="rack:r2;gen:2"),
        offer("good", "a5", hostname="node-5", attributes="rack:r2;gen:3.0"),  # no gpu: UNLIKE holds
    )
    assert [c.offer_id for c in only(out, Launch)] == ["good"]
    assert set(only(out, Decline)[0].offer_ids) == {"wrong-rack", "bad-host", "old-gpu", "gen-2"}


def test_a_job_that_fits_nowhere_waits_and_the_queue_says_why() -> None:
    h = Harness()
    h.put(job_doc("big", run={"cpus": 64, "mem": 100000}))
    run = h.start("big")
    assert h.engine.queue()[0]["runs"][0]["reason"] == "waiting for offers (none received yet)"
    h.offers(offer("o1", "a1", "cpus:4;mem:4096"), offer("o2", "a2", "cpus:2;mem:8192"))
    [entry] = h.engine.queue()
    assert entry["jobId"] == "big"
    assert entry["runs"][0]["runId"] == run.id
    assert entry["runs"][0]["reason"] == ("needs cpus 64 but the largest offer seen had 4; "
                                          "needs mem 100000 but the largest offer seen had 8192")
    assert h.run_json("big", run.id)["status"] == "INITIAL"


def test_the_queue_names_unmet_constraints_and_momentary_shortage() -> None:
    h = Harness()
    h.put(job_doc("picky", run={"placement": {"constraints": [
        {"attribute": "zone", "operator": "IS", "value": "z9"}]}}))
    h.start("picky")
    h.offers(offer(attributes="zone:z1"))
    assert h.engine.queue()[0]["runs"][0]["reason"] == (
        "no agent seen matches the placement constraints (zone IS z9); 1 agents seen")
    h.put(job_doc("fits-later", run={"cpus": 2}))
    h.start("fits-later")
    h.offers(offer("o1", "a1", "cpus:1;mem:4096"), offer("o2", "a2", "cpus:4;mem:4096"))  # a2's offer is used
    h.offers(offer("o3", "a2", "cpus:1;mem:4096"))
    queued = {e["jobId"]: e["runs"] for e in h.engine.queue()}
    assert "fits-later" not in queued  # it launched on o2
    h.start("fits-later")
    h.offers(offer("o4", "a1", "cpus:1;mem:4096"), offer("o5", "a2", "cpus:1;mem:4096"))
    reasons = {e["jobId"]: e["runs"][0]["reason"] for e in h.engine.queue()}
    assert reasons["fits-later"] == "needs cpus 2 but the largest offer seen had 1"


def test_the_task_info_for_cmd_args_docker_env_and_grace_period() -> None:
    h = Harness()
    h.put(job_doc("sh", labels={"team": "a"}, run={"cmd": "echo $MODE", "env": {"MODE": "x"},
                                                   "taskKillGracePeriodSeconds": 2.5, "user": "nobody"}))
    h.put({"id": "argv", "run": {"args": ["/bin/echo", "a b"], "cpus": 1}})
    h.put({"id": "img", "run": {"docker": {"image": "busybox:1"}, "args": ["sleep", "1"], "cpus": 1}})
    h.put({"id": "img-default", "run": {"docker": {"image": "busybox:1", "forcePullImage": True}, "cpus": 1}})
    for job_id in ("sh", "argv", "img", "img-default"):
        h.start(job_id)
    tasks = {t.name: t for t in launched(h.offers(offer(resources="cpus:8;mem:4096")))}
    sh = tasks["sh"]
    assert (sh.command.shell, sh.command.value, sh.command.user) == (True, "echo $MODE", "nobody")
    env = {v.name: v.value for v in sh.command.environment.variables}
    assert env["MODE"] == "x" and env["MENSA_TASK_INDEX"] == "0"
    assert sh.kill_policy.grace_period.nanoseconds == 2_500_000_000
    assert not sh.HasField("container")
    assert ("team", "a") in {(label.key, label.value) for label in sh.labels.labels}
    argv = tasks["argv"]
    assert (argv.command.shell, argv.command.value, list(argv.command.arguments)) == (
        False, "/bin/echo", ["/bin/echo", "a b"])
    img = tasks["img"]
    assert img.container.type == mensa_pb2.ContainerInfo.DOCKER and img.container.docker.image == "busybox:1"
    # With an image, args are the container's command: the Docker containerizer runs
    # [value, *arguments], so the value stays empty (argv[0] is not doubled).
    assert (img.command.shell, img.command.value) == (False, "")
    assert img.command.arguments[0] == "sleep"
    default = tasks["img-default"]
    assert (default.command.shell, default.command.value) == (False, "")  # the image's own command
    assert default.container.docker.force_pull_image


def test_unreadable_offers_are_declined() -> None:
    h = Harness()
    h.put(job_doc())
    h.start()
    bad = offer("bad")
    bad.resources[0].scalar.value = -1
    out = h.offers(bad)
    assert only(out, Decline) == [Decline(("bad",), 5.0)]
    assert launched_ids(out) == []


def test_a_task_that_cannot_be_built_is_skipped_and_the_others_still_launch() -> None:
    import dataclasses

    from mensa.frameworks.batch_fw.jobs import parse_job

    h = Harness()
    good = parse_job(job_doc("good"))
    # Built by hand (parse_job refuses it): a lone surrogate no TaskInfo can carry.
    bad = parse_job(job_doc("bad"))
    bad = dataclasses.replace(bad, run=dataclasses.replace(bad.run, env=(("X", "\ud800"),)))
    h.apply(h.engine.put_job(bad, h.now))
    h.apply(h.engine.put_job(good, h.now))
    bad_run = h.start("bad")
    good_run = h.start("good")
    out = h.offers(offer("o1", resources="cpus:4;mem:4096"))
    assert launched_ids(out) == [f"good.{good_run.id}.0.1"]
    bad_doc = h.run_json("bad", bad_run.id)
    assert bad_doc["status"] == "INITIAL" and bad_doc["tasks"] == [] and bad_doc["attempts"] == 0
    [entry] = [q for q in h.engine.queue() if q["jobId"] == "bad"]
    assert entry["runs"][0]["reason"].startswith("task 0 cannot be launched: UnicodeEncodeError")
    assert h.engine.wants_offers()  # it still waits (a fixed job can be run again)
