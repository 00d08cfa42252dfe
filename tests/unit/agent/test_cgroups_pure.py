"""The pure half of cgroup isolation: limits, mount parsing, version choice, launcher argv."""

from __future__ import annotations

from mensa.agent.containerizer import cgroups
from mensa.agent.containerizer.launcher import LAUNCHER_NAME, launcher_argv
from mensa.agent.containerizer.process import oom_message
from mensa.proto.resources import Resources

MB = 1024 * 1024

HYBRID = """\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime shared:12 - cgroup cgroup rw,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,relatime shared:14 - cgroup cgroup rw,pids
"""
PURE_V2 = "40 25 0:35 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
COMOUNTED_RO = """\
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct ro,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
"""


def test_limits_follow_mem_and_cpus() -> None:
    limits = cgroups.limits_from_resources(Resources.parse("cpus:0.5;mem:64"), pids_max=100)
    # 0.5 cpu: half of each 100 ms period, half the shares of one cpu (1024), weight 50 of 100.
    assert limits == cgroups.Limits(64 * MB, 50_000, 100_000, 512, 50, 100)
    assert limits.memory_mb == 64


def test_tiny_cpus_get_the_kernels_minimum_quota_and_no_resources_no_limits() -> None:
    assert cgroups.limits_from_resources(Resources.parse("cpus:0.001")).cpu_quota_us == 1_000
    none = cgroups.limits_from_resources(Resources.empty(), pids_max=None)
    assert none == cgroups.Limits()
    assert cgroups.v1_settings(none, {"pids"}) == [] and cgroups.v2_settings(none, {"pids.max"}) == []


def test_v1_settings_write_memsw_and_pids_only_when_present() -> None:
    limits = cgroups.Limits(32 * MB, 20_000, 100_000, 205, 20, 64)
    assert cgroups.v1_settings(limits, {"memory.memsw.limit_in_bytes", "pids"}) == [
        ("memory", "memory.limit_in_bytes", str(32 * MB)),
        ("memory", "memory.memsw.limit_in_bytes", str(32 * MB)),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "20000"),
        ("cpu", "cpu.shares", "205"),
        ("pids", "pids.max", "64"),
    ]
    assert [f for _, f, _ in cgroups.v1_settings(limits, set())] == [
        "memory.limit_in_bytes", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares",
    ]


def test_v2_settings_turn_swap_off_and_combine_quota_and_period() -> None:
    limits = cgroups.Limits(32 * MB, 20_000, 100_000, 205, 20, 64)
    assert cgroups.v2_settings(limits, {"memory.swap.max", "pids.max"}) == [
        ("memory.max", str(32 * MB)),
        ("memory.swap.max", "0"),
        ("cpu.max", "20000 100000"),
        ("cpu.weight", "20"),
        ("pids.max", "64"),
    ]


def test_rlimit_as_has_headroom() -> None:
    assert cgroups.rlimit_as_bytes(64 * MB) == 64 * MB + 256 * MB
    assert cgroups.rlimit_as_bytes(1024 * MB) == 2048 * MB


def test_hybrid_host_is_v1_because_unified_lacks_memory_and_cpu() -> None:
    mounts = cgroups.find_mounts(cgroups.parse_mountinfo(HYBRID), "/sys/fs/cgroup")
    assert mounts.v2 == "/sys/fs/cgroup/unified"
    assert mounts.v1 == {c: f"/sys/fs/cgroup/{c}" for c in ("cpu", "cpuacct", "memory", "pids")}
    assert cgroups.choose_versions(mounts, []) == ["v1"]
    assert cgroups.choose_versions(mounts, ["memory", "cpu", "pids"]) == ["v2", "v1"]
    assert "cgroup2 at /sys/fs/cgroup/unified lacks memory,cpu" in cgroups.missing_for(mounts, [])


def test_pure_v2_host_is_v2_and_other_roots_see_nothing() -> None:
    mounts = cgroups.find_mounts(cgroups.parse_mountinfo(PURE_V2), "/sys/fs/cgroup")
    assert mounts.v2 == "/sys/fs/cgroup" and mounts.v1 == {}
    assert cgroups.choose_versions(mounts, ["cpuset", "cpu", "io", "memory", "pids"]) == ["v2"]
    assert cgroups.choose_versions(mounts, ["pids"]) == []
    elsewhere = cgroups.find_mounts(cgroups.parse_mountinfo(HYBRID), "/tmp/x")
    assert elsewhere == cgroups.CgroupMounts()
    assert cgroups.choose_versions(elsewhere, []) == []


def test_read_only_and_comounted_hierarchies() -> None:
    mounts = cgroups.find_mounts(cgroups.parse_mountinfo(COMOUNTED_RO), "/sys/fs/cgroup")
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert cgroups.choose_versions(mounts, []) == []
    assert "cgroup v1 memory at /sys/fs/cgroup/memory is read-only" in cgroups.missing_for(mounts, [])


def test_mountinfo_unescapes_and_skips_garbage() -> None:
    text = "1 2 0:1 / /a\\040b rw - cgroup2 none rw\nnot a mount line\n3 4 0:2 / /c rw\n"
    assert cgroups.parse_mountinfo(text) == [
        cgroups.Mount("/a b", "cgroup2", frozenset({"rw"}), "/")
    ]


def test_cgroup_file_parsers() -> None:
    assert cgroups.parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\nbad\n") == {
        "oom_kill_disable": 0, "under_oom": 0, "oom_kill": 2,
    }
    assert cgroups.parse_pids("12\n345\n\n") == [12, 345]
    usage = cgroups.Usage(1.5, 10, 20, 1)
    assert usage.to_json() == {
        "cpu_seconds": 1.5, "memory_bytes": 10, "memory_max_bytes": 20, "oom_kills": 1,
    }


def test_launcher_joins_cgroups_then_execs_the_task() -> None:
    procs = ["/cg/m/x/cgroup.procs", "/cg/p x/cgroup.procs"]
    argv = launcher_argv(["prog", "a b"], "prog", procs_files=procs)
    assert argv == [
        "/bin/sh", "-c",
        "echo 0 > /cg/m/x/cgroup.procs && echo 0 > '/cg/p x/cgroup.procs' && exec \"$@\"",
        LAUNCHER_NAME, "prog", "a b",
    ]


def test_launcher_with_rlimits_namespace_user_and_argv0() -> None:
    argv = launcher_argv(
        ["name0", "x"], "/bin/prog", rlimit_as=2048 * 1024, unshare="/usr/bin/unshare",
        setpriv=["/usr/bin/setpriv", "--reuid=1"], bash="/bin/bash",
    )
    assert argv[2] == 'ulimit -v 2048 && exec "$@"'
    assert argv[4:] == [
        "/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--",
        "/usr/bin/setpriv", "--reuid=1", "--",
        "/bin/bash", "-c", 'e=$1; shift; exec -a "$0" "$e" "$@"', "name0", "/bin/prog", "x",
    ]


def test_oom_message_names_the_limit() -> None:
    assert oom_message(cgroups.Limits(64 * MB)) == "OOM-killed: memory limit of 64 MB exceeded"
    assert oom_message(cgroups.Limits()) == "OOM-killed"
