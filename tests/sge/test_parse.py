"""Grid Engine's output parsed table-driven, from output recorded on the project's real SGE
(Son of Grid Engine 8.1.9, scripts/sge/start-sge.sh) in tests/sge/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_stax.psij_sge import parse

DATA = Path(__file__).parent / "data"


def data(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        # run1 running, susp suspended (qmod -sj), 20/22 error (bad -o path), 27 error (bad -wd),
        # held: qsub -h
        (
            "qstat-xml-mixed.xml",
            {"25": "r", "28": "s", "20": "Eqw", "27": "Eqw", "22": "Eqw", "26": "hqw"},
        ),
        # right after qdel of the running job 25
        (
            "qstat-xml-deleting.xml",
            {"25": "dr", "28": "s", "20": "Eqw", "27": "Eqw", "22": "Eqw", "26": "hqw"},
        ),
        # an array job (qsub -t 1-6 -tc 2): tasks 1 and 2 running, 3-6 pending, ONE job
        ("qstat-xml-array.xml", {"1923": "r"}),
    ],
)
def test_qstat_xml(file: str, expected: dict[str, str]) -> None:
    assert parse.parse_qstat_xml(data(file)) == expected


def test_qstat_xml_without_jobs() -> None:
    # qstat -xml with no job prints the empty skeleton; an empty output is no job either
    empty = (
        "<?xml version='1.0'?>\n<job_info  xmlns:xsd=\"x\">\n  <queue_info>\n  </queue_info>\n"
        "  <job_info>\n  </job_info>\n</job_info>\n"
    )
    assert parse.parse_qstat_xml(empty) == {}
    assert parse.parse_qstat_xml("") == {}


def test_plain_and_xml_qstat_agree() -> None:
    """The recorded plain qstat (same moment as the XML) lists the same jobs and states."""
    plain = {}
    for line in data("qstat-plain-mixed.txt").splitlines()[2:]:
        cols = line.split()
        plain[cols[0]] = cols[4]
    assert plain == parse.parse_qstat_xml(data("qstat-xml-mixed.xml"))


@pytest.mark.parametrize(
    ("code", "state"),
    [
        ("qw", "QUEUED"),
        ("hqw", "QUEUED"),
        ("hRwq", "QUEUED"),
        ("r", "ACTIVE"),
        ("t", "ACTIVE"),
        ("Rr", "ACTIVE"),
        ("s", "ACTIVE"),
        ("S", "ACTIVE"),
        ("T", "ACTIVE"),
        ("Eqw", "FAILED"),
        ("Ehqw", "FAILED"),
        ("EhRqw", "FAILED"),
        ("dr", "ACTIVE"),
        ("dt", "ACTIVE"),
        ("dqw", "QUEUED"),
        # not in qstat(1): read by their letters
        ("Ehrqw", "FAILED"),
        ("xr", "ACTIVE"),
        ("zw", "QUEUED"),
    ],
)
def test_state_table(code: str, state: str) -> None:
    assert parse.psij_state(code) == state


def test_every_state_of_the_table_is_a_psij_state() -> None:
    from psij import JobState

    for code, name in parse.STATES.items():
        assert isinstance(getattr(JobState, name), JobState), code


def test_error_reason_from_qstat_j() -> None:
    assert parse.parse_error_reasons(data("qstat-j-eqw.txt")) == {
        "27": "can't chdir to /nonexistent: No such file or directory"
    }
    two = data("qstat-j-eqw.txt") + data("qstat-j-eqw.txt").replace("27", "28")
    assert set(parse.parse_error_reasons(two)) == {"27", "28"}
    assert parse.parse_error_reasons("Following jobs do not exist: \n27\n") == {}


@pytest.mark.parametrize(
    ("file", "failed", "exit_status", "message"),
    [
        ("qacct-exit0.txt", 0, 0, None),
        ("qacct-exit3.txt", 0, 3, None),
        (
            "qacct-h_rt.txt",
            37,
            137,
            "Grid Engine: job failed (code 37: qmaster enforced h_rt, h_cpu, or h_vmem limit)",
        ),
        ("qacct-deleted.txt", 100, 137, "Grid Engine: job failed (code 100: assumedly after job)"),
    ],
)
def test_qacct(file: str, failed: int, exit_status: int, message: str | None) -> None:
    rec = parse.parse_qacct(data(file))
    assert rec is not None
    assert (rec.failed, rec.exit_status, rec.message) == (failed, exit_status, message)


def test_qacct_last_record_wins_and_unknown_job() -> None:
    both = data("qacct-exit0.txt") + data("qacct-exit3.txt")
    rec = parse.parse_qacct(both)
    assert rec is not None and rec.exit_status == 3
    assert parse.parse_qacct(data("qacct-unknown.txt")) is None
    assert parse.parse_qacct("") is None


@pytest.mark.parametrize(
    ("out", "job_id"),
    [
        (data("qsub-plain.txt"), "29"),
        (data("qsub-terse.txt"), "30"),
        ('Your job-array 42.1-3:1 ("arr") has been submitted\n', "42"),
        ("43.1-3:1\n", "43"),
    ],
)
def test_job_id_from_qsub(out: str, job_id: str) -> None:
    assert parse.job_id_from_qsub(out) == job_id


@pytest.mark.parametrize("out", [data("qsub-error.txt"), "", "Exiting.\n"])
def test_no_job_id(out: str) -> None:
    with pytest.raises(ValueError, match="cannot find a job id"):
        parse.job_id_from_qsub(out)


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("all.q", "all.q"),
        ("/tmp/a b/c", '"/tmp/a b/c"'),
        ("/tmp/d$x/$JOB_ID.out", "/tmp/d$x/$JOB_ID.out"),
        ("x=$(touch /tmp/pwned)", '"x=$(touch /tmp/pwned)"'),
        ("x=`touch`", "x=`touch`"),
        ("a; touch b", '"a; touch b"'),
        (3, "3"),
    ],
)
def test_directive_value(value: object, word: str) -> None:
    assert parse.directive_value(value, "v") == word


@pytest.mark.parametrize(
    "value",
    ["a\ntouch /tmp/pwned", "a\rb", "it's", 'q"x', "h#x", "back\\slash", "nul\x00", ""],
)
def test_directive_value_refused(value: str) -> None:
    with pytest.raises(parse.DirectiveError):
        parse.directive_value(value, "v")


@pytest.mark.parametrize("key", ["l", "notify", "hold_jid", "a-b"])
def test_directive_option(key: str) -> None:
    assert parse.directive_option(key) == key


@pytest.mark.parametrize("key", ["", "1x", "l x", "l\n#$ -q evil", "-l", "l;x"])
def test_directive_option_refused(key: str) -> None:
    with pytest.raises(parse.DirectiveError):
        parse.directive_option(key)


@pytest.mark.parametrize(
    ("name", "sge_name"),
    [
        ("stax-abc-step1", "stax-abc-step1"),
        ("my job", "my_job"),
        ("a:b/c@d*e?f#g'h\"i", "a_b_c_d_e_f_g_h_i"),
        ("1st", "j1st"),
        ("", "job"),
        ("a.b-c_d+e=f%g,h", "a.b-c_d+e=f%g,h"),
    ],
)
def test_job_name(name: str, sge_name: str) -> None:
    assert parse.job_name(name) == sge_name


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(600, "0:10:00"), (0.2, "0:00:01"), (90061, "25:01:01"), (59.5, "0:01:00")],
)
def test_h_rt(seconds: float, text: str) -> None:
    assert parse.h_rt(seconds) == text


@pytest.mark.parametrize(
    ("total", "slots", "text"),
    [(2**30, 1, "1048576K"), (2**30, 2, "524288K"), (1000, 3, "1K"), (2**30, 0, "1048576K")],
)
def test_memory_per_slot(total: int, slots: int, text: str) -> None:
    assert parse.memory_per_slot(total, slots) == text
