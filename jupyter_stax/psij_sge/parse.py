"""Grid Engine's command output and directive syntax, as pure functions (no PSI/J import).

Everything here was checked against Son of Grid Engine 8.1.9 (recorded output in
``tests/sge/data``): ``qsub`` and ``qsub -terse``, ``qstat -xml``, ``qstat -j``, ``qacct -j``,
and how ``qsub`` reads ``#$`` lines of a job script.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

#: qstat job state code -> PSI/J state name. The codes and their groups are those of qstat(1)
#: ("pending, running, suspended, error, deleted"); a deleted job that still runs ("dr") is still
#: active, and an error state ("Eqw") never starts unless someone clears it (``qmod -cj``), so the
#: executor reports it as failed (and deletes the job).
STATES: dict[str, str] = {
    # pending
    "qw": "QUEUED",
    "hqw": "QUEUED",
    "hRwq": "QUEUED",
    # running (t = being transferred to the execution host)
    "r": "ACTIVE",
    "t": "ACTIVE",
    "Rr": "ACTIVE",
    "Rt": "ACTIVE",
    # suspended (by the user, by the queue's thresholds), still holding its slots
    "s": "ACTIVE",
    "ts": "ACTIVE",
    "S": "ACTIVE",
    "tS": "ACTIVE",
    "T": "ACTIVE",
    "tT": "ACTIVE",
    "Rs": "ACTIVE",
    "Rts": "ACTIVE",
    "RS": "ACTIVE",
    "RtS": "ACTIVE",
    "RT": "ACTIVE",
    "RtT": "ACTIVE",
    # error: the job can never start as it stands
    "Eqw": "FAILED",
    "Ehqw": "FAILED",
    "EhRqw": "FAILED",
    # deletion requested, the job has not ended yet
    "dr": "ACTIVE",
    "dt": "ACTIVE",
    "dRr": "ACTIVE",
    "dRt": "ACTIVE",
    "ds": "ACTIVE",
    "dS": "ACTIVE",
    "dT": "ACTIVE",
    "dRs": "ACTIVE",
    "dRS": "ACTIVE",
    "dRT": "ACTIVE",
    "dqw": "QUEUED",
    "dhqw": "QUEUED",
}


def psij_state(code: str) -> str:
    """The PSI/J state name of a qstat state code. A code missing from :data:`STATES` (a newer
    Grid Engine) is read by its letters: E = error, r/t/s/S/T = running, else pending."""
    if code in STATES:
        return STATES[code]
    if "E" in code:
        return "FAILED"
    if any(c in code for c in "rtsST"):
        return "ACTIVE"
    return "QUEUED"


def parse_qstat_xml(out: str) -> dict[str, str]:
    """``qstat -xml`` -> {job number: state code}. Array tasks of one job share its number; the
    first one listed (running jobs come first) wins."""
    jobs: dict[str, str] = {}
    if not out.strip():
        return jobs
    root = ET.fromstring(out)
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        state = (job.findtext("state") or "").strip()
        if number and state and number not in jobs:
            jobs[number] = state
    return jobs


_SECTION = re.compile(r"^=+\s*$", re.M)


def parse_error_reasons(out: str) -> dict[str, str]:
    """``qstat -j ID[,ID...]`` -> {job number: the error reason(s)} for jobs that have one."""
    reasons: dict[str, str] = {}
    for section in _SECTION.split(out):
        number = None
        why: list[str] = []
        for line in section.splitlines():
            if line.startswith("job_number:"):
                number = line.split(":", 1)[1].strip()
            elif line.startswith("error reason"):
                # "error reason    1:      12/01/2026 15:27:05 [0:3299]: error: can't chdir ..."
                text = line.split(":", 1)[1]
                text = re.sub(r"^\s*\S+\s+\S+\s+\[[^\]]*\]:\s*", "", text).strip()
                why.append(re.sub(r"^error:\s*", "", text))
        if number and why:
            reasons[number] = "; ".join(why)
    return reasons


@dataclass(frozen=True)
class Accounting:
    """One ``qacct -j`` record: SGE's ``failed`` code and reason, and the job's exit status."""

    failed: int
    failed_reason: str
    exit_status: int

    @property
    def message(self) -> str | None:
        if self.failed == 0:
            return None
        why = f": {self.failed_reason}" if self.failed_reason else ""
        return f"Grid Engine: job failed (code {self.failed}{why})"


def parse_qacct(out: str) -> Accounting | None:
    """``qacct -j ID`` -> the last record (ids can repeat over a cluster's life), or None."""
    last: Accounting | None = None
    for section in _SECTION.split(out):
        fields: dict[str, str] = {}
        for line in section.splitlines():
            key, _, value = line.partition(" ")
            if key:
                fields[key] = value.strip()
        if "exit_status" not in fields or "failed" not in fields:
            continue
        failed_code, _, failed_reason = fields["failed"].partition(":")
        try:
            last = Accounting(
                failed=int(failed_code.strip()),
                failed_reason=failed_reason.strip(),
                exit_status=int(fields["exit_status"].split()[0]),
            )
        except ValueError:
            continue
    return last


_SUBMITTED = re.compile(r"Your job(?:-array)? (\d+)")


def job_id_from_qsub(out: str) -> str:
    """The job number from ``qsub -terse`` ("42") or plain ``qsub`` output ("Your job 42
    ("name") has been submitted"; arrays: "Your job-array 42.1-3:1 ...")."""
    text = out.strip()
    m = _SUBMITTED.search(text)
    if m:
        return m.group(1)
    last = text.splitlines()[-1].strip() if text else ""
    m = re.fullmatch(r"(\d+)(?:\.\S*)?", last)
    if m:
        return m.group(1)
    raise ValueError(f"cannot find a job id in the qsub output {out!r}")


# ------------------------------------------------------------------ directives
#: qsub's reader of "#$" lines keeps double-quoted words together but knows no escapes: a '#'
#: ends the line even inside quotes, and a path with a quote character makes the job fail
#: ("failed 26: opening input/output file"). Such values are refused, never passed.
_DIRECTIVE_FORBIDDEN = re.compile(r"[\"'#\\\x00-\x1f\x7f]")
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class DirectiveError(ValueError):
    """A value that a ``#$`` line cannot carry."""


def directive_value(value: object, what: str) -> str:
    """``value`` as one word of a ``#$`` line (double-quoted when it has blanks)."""
    s = str(value)
    bad = _DIRECTIVE_FORBIDDEN.search(s)
    if bad:
        raise DirectiveError(
            f"{what} {s!r} contains {bad.group()!r}, which a Grid Engine '#$' directive cannot "
            "carry (no quotes, '#', backslashes or control characters)"
        )
    if not s:
        raise DirectiveError(f"{what} is empty")
    return f'"{s}"' if re.search(r"\s", s) else s


def directive_option(key: str) -> str:
    """A qsub option name from a custom attribute key (``sge.notify`` -> ``notify``)."""
    if not _OPTION.fullmatch(key):
        raise DirectiveError(
            f"custom attribute option {key!r} is not a qsub option name (letters, digits, '_', "
            "'-', starting with a letter)"
        )
    return key


def job_name(name: str) -> str:
    """A job name Grid Engine accepts: no blanks, ':', '/', '@', '*', '?', '#', quotes (they are
    replaced by '_'), not starting with a digit."""
    s = re.sub(r"[^A-Za-z0-9._+=%,-]", "_", name) or "job"
    return f"j{s}" if s[0].isdigit() else s


def h_rt(seconds: float) -> str:
    """A walltime as ``-l h_rt=`` takes it (H:MM:SS, hours not limited to 24)."""
    total = max(1, math.ceil(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def memory_per_slot(total_bytes: int, slots: int) -> str:
    """Grid Engine's memory limits (h_vmem, ...) count per slot: the job's total split over its
    slots, rounded up to whole KiB (``-l h_vmem=`` takes a K suffix)."""
    per = math.ceil(total_bytes / max(1, slots) / 1024)
    return f"{per}K"
