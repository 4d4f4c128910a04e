"""Grid Engine's scheduler knowledge (engine/schedulers/sge.py) on recorded output
(tests/sge/data, Son of Grid Engine 8.1.9), table-driven, and its place in the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_stax.core.models import Cluster
from jupyter_stax.doctor import SCHEDULER_COMMANDS
from jupyter_stax.engine import schedulers
from jupyter_stax.engine.schedulers import sge

DATA = Path(__file__).parent / "data"


def data(name: str) -> str:
    return (DATA / name).read_text()


def test_registry_knows_sge_with_native_dependencies() -> None:
    k = schedulers.get("sge")
    assert k is not None and k.name == "sge" and schedulers.native_dependencies("sge")
    assert k.status_command == ("qstat", "-xml")
    assert k.summary is sge.summary and k.executor_settings is sge.executor_settings
    assert schedulers.get("gridengine") is None  # the alias is resolved by the cluster model
    assert Cluster(name="g", scheduler="gridengine").scheduler == "sge"


def test_status_of_mixed_jobs() -> None:
    jobs = sge.parse_status(data("qstat-xml-mixed.xml"))
    assert jobs["25"] == ("ACTIVE", "r")
    assert jobs["28"] == ("ACTIVE", "s")
    assert jobs["26"] == ("QUEUED", "hqw")
    assert jobs["27"] == ("FAILED", "Eqw")
    assert sge.parse_status(data("qstat-xml-deleting.xml"))["25"] == ("ACTIVE", "dr")
    assert sge.parse_status("") == {}


@pytest.mark.parametrize(
    ("state", "code", "verify"),
    [
        ("QUEUED", "qw", True),
        ("QUEUED", "hqw", False),  # held by the user, or waiting for -hold_jid jobs
        ("QUEUED", "hRwq", False),
        ("QUEUED", "dqw", False),  # being deleted
        ("FAILED", "Eqw", False),  # the executor reports it failed and deletes it
        ("ACTIVE", "r", False),
        ("ACTIVE", "t", False),
    ],
)
def test_which_queued_jobs_are_verified(state: str, code: str, verify: bool) -> None:
    assert sge.may_be_blocked(state, code) is verify


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        ("qalter-w-v-never.txt", 'cannot run in PE "smp" because it only offers 0 slots'),
        ("qalter-w-v-fits.txt", None),  # "found possible assignment with 4 slots"
        ("qalter-w-v-running.txt", None),  # "job is already running or is held"
    ],
)
def test_verification_verdicts(recorded: str, why: str | None) -> None:
    assert sge.parse_verification(data(recorded)) == why


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("verification: found suitable queue(s)\n", None),
        ("verification: no suitable queues\n", "no queue instance fits its requests"),
        (
            'Job 7 (-l h_rt=99:0:0) cannot run in queue "all.q" because of a\n'
            "verification: no suitable queues\n",
            '(-l h_rt=99:0:0) cannot run in queue "all.q" because of a',
        ),
        ('denied: job "46" does not exist\n', None),
        ("", None),
    ],
)
def test_verification_lines(out: str, why: str | None) -> None:
    assert sge.parse_verification(out) == why


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (set(), []),
        ({"10", "9"}, ["9", "10"]),
        ({str(n) for n in range(95, 105)}, ["95", "96", "97", "98"]),
    ],
)
def test_a_few_oldest_jobs_are_verified_per_poll(ids: set[str], expected: list[str]) -> None:
    assert sge.to_verify(ids) == expected == sorted(expected, key=int)[: sge.VERIFY_PER_POLL]


def test_blocked_message_says_it_never_starts() -> None:
    msg = sge.blocked_reason('cannot run in PE "smp" because it only offers 0 slots')
    assert msg.startswith('no suitable queues: cannot run in PE "smp"')
    assert "even on an empty cluster" in msg


@pytest.mark.parametrize(
    ("after", "expected"),
    [((), {}), (("12",), {"sge.hold_jid": "12"}), (("12", "13"), {"sge.hold_jid": "12,13"})],
)
def test_submit_attributes(after: tuple[str, ...], expected: dict[str, str]) -> None:
    assert sge.submit_attributes("stax-x", after) == expected


def test_find_by_name_in_qstat_and_qacct() -> None:
    cmd = sge.find_by_name_command("stax-find-a-1")
    assert cmd[:2] == ["sh", "-c"] and cmd[-1] == "stax-find-a-1"
    # job 97 ended (qacct), job 98 of the same name is held (qstat): the newest wins
    both = data("find-by-name.txt")
    assert sge.parse_job_ids(both, "stax-find-a-1") == "98"
    acct = both.partition("@@qacct")[2]
    empty = "<?xml version='1.0'?>\n<job_info><queue_info/><job_info/></job_info>\n"
    assert sge.parse_job_ids(empty + "@@qacct" + acct, "stax-find-a-1") == "97"  # ended only
    assert sge.parse_job_ids(data("find-by-name-none.txt"), "nosuch-name") is None
    assert sge.parse_job_ids(both, "other-name") is None
    # the name is looked up as the executor submits it (made valid for Grid Engine)
    assert sge.find_by_name_command("1 a/b")[-1] == "j1_a_b"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, {"parallel_environment": "smp", "memory_complex": "h_vmem"}),
        ({"pe": "mpi"}, {"parallel_environment": "mpi", "memory_complex": "h_vmem"}),
        (
            {"memory_complex": "mem_free"},
            {"parallel_environment": "smp", "memory_complex": "mem_free"},
        ),
    ],
)
def test_executor_settings(settings: dict[str, str], expected: dict[str, object]) -> None:
    c = Cluster.model_validate({"name": "g", "scheduler": "sge", **settings})
    assert sge.executor_settings(c) == expected


@pytest.mark.parametrize(
    "recorded", ["qstat-qmaster-down.txt", "qsub-qmaster-down.txt", "qdel-qmaster-down.txt"]
)
def test_a_qmaster_that_does_not_answer_is_transient(recorded: str) -> None:
    assert schedulers.is_transient(data(recorded))


@pytest.mark.parametrize("recorded", ["qsub-error.txt", "qdel-unknown.txt", "qacct-unknown.txt"])
def test_real_refusals_are_not_transient(recorded: str) -> None:
    assert not schedulers.is_transient(data(recorded))


@pytest.mark.parametrize(
    ("recorded", "queue", "expected"),
    [
        ("qstat-g-c.txt", None, (4, 0, 0, 4, 0)),
        ("qstat-g-c-busy.txt", "all.q", (4, 2, 0, 2, 0)),
        ("qstat-g-c-busy.txt", "other.q", (0, 0, 0, 0, 0)),
    ],
)
def test_slots(recorded: str, queue: str | None, expected: tuple[int, ...]) -> None:
    s = sge.parse_qstat_g_c(data(recorded), queue)
    assert (s.total, s.used, s.reserved, s.available, s.unavailable) == expected


def test_slots_of_several_queues_and_unusable_instances() -> None:
    out = (
        "CLUSTER QUEUE                   CQLOAD   USED    RES  AVAIL  TOTAL aoACDS  cdsuE  \n"
        "--------------------------------------------------------------------------------\n"
        "all.q                             0.50      3      1      4      8      0      0 \n"
        "gpu.q                             -NA-      0      0      0      4      0      4 \n"
    )
    s = sge.parse_qstat_g_c(out)
    assert (s.total, s.used, s.reserved, s.available, s.unavailable) == (12, 3, 1, 4, 4)


@pytest.mark.parametrize(
    ("out", "queue", "expected"),
    [
        (data("qhost-q.txt"), None, (1, 0, 1, 0)),  # 2 of 4 slots in use
        (data("qhost-q.txt"), "all.q", (1, 0, 1, 0)),
        (data("qhost-q.txt"), "other.q", (0, 0, 0, 0)),
        (data("qhost.txt"), None, (1, 1, 0, 0)),  # without -q: no instances, idle
        (
            "HOSTNAME ARCH NCPU NSOC NCOR NTHR LOAD MEMTOT MEMUSE SWAPTO SWAPUS\n"
            "global - - - - - - - - - -\n"
            "a lx-amd64 2 1 2 2 0.10 4G 1G 0 0\n"
            "   all.q BIP 0/0/2\n"
            "b lx-amd64 2 1 2 2 - - - - -\n"  # execd down
            "   all.q BIP 0/0/2 au\n"
            "c lx-amd64 2 1 2 2 0.50 4G 1G 0 0\n"
            "   all.q BIP 0/0/2 d\n"  # disabled
            "d lx-amd64 2 1 2 2 0.50 4G 1G 0 0\n"
            "   all.q BIP 0/1/2\n",
            None,
            (4, 1, 1, 2),
        ),
    ],
)
def test_hosts(out: str, queue: str | None, expected: tuple[int, ...]) -> None:
    n = sge.parse_qhost_q(out, queue)
    assert (n.total, n.idle, n.allocated, n.unavailable) == expected


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        ("qstat-xml-me.xml", (1, 1, 0)),  # 52 running, 53 pending
        ("qstat-xml-mixed.xml", (4, 2, 0)),  # Eqw and hqw wait; r and s hold their slots
        ("qstat-xml-deleting.xml", (4, 1, 1)),  # dr: being deleted
    ],
)
def test_my_jobs(recorded: str, expected: tuple[int, ...]) -> None:
    j = sge.parse_my_jobs(data(recorded))
    assert (j.queued, j.running, j.completing) == expected


def test_summary_runs_three_commands() -> None:
    ran: list[list[str]] = []
    answers = {
        "qstat -g c": data("qstat-g-c-busy.txt"),
        "qhost -q": data("qhost-q.txt"),
        "qstat -xml": data("qstat-xml-me.xml"),
    }

    def run(argv: object) -> str:
        ran.append(list(argv))  # type: ignore[call-overload]
        return answers[" ".join(ran[-1])]

    s = sge.summary(Cluster(name="g", scheduler="sge", queue="all.q"), run)
    assert [" ".join(a) for a in ran] == list(answers)
    assert s.scheduler == "sge" and s.queue == "all.q"
    assert (s.slots.used, s.hosts.allocated, s.jobs.running, s.jobs.queued) == (2, 1, 1, 1)


def test_doctor_knows_the_commands() -> None:
    assert SCHEDULER_COMMANDS["sge"] == ("qsub", "qstat", "qdel", "qacct", "qalter")


@pytest.mark.parametrize(
    ("settings", "pe", "complex_"),
    [
        ({}, "smp", "h_vmem"),
        ({"scheduler": "gridengine", "pe": "mpi", "memory_complex": "mem_free"}, "mpi", "mem_free"),
    ],
)
def test_the_backend_builds_the_sge_executor_from_the_cluster(
    tmp_path: Path, settings: dict[str, str], pe: str, complex_: str
) -> None:
    from jupyter_stax.engine.backend import Backend
    from jupyter_stax.engine.transport import LocalTransport

    c = Cluster.model_validate({"name": "g", "scheduler": "sge", "poll_interval": 3, **settings})
    b = Backend(c, tmp_path, lambda u: None, LocalTransport(tmp_path))
    try:
        cfg = b._executor.config
        assert type(cfg).__name__ == "SgeExecutorConfig"
        assert (cfg.parallel_environment, cfg.memory_complex) == (pe, complex_)
        assert cfg.queue_polling_interval == 3
        assert b._executor.get_status_command([]) == ["qstat", "-xml"]
    finally:
        b.close()
