"""The submit form: cluster defaults and live numbers, image list, resources as defaults
(a step's own values win), parameters, submission on the real engine, errors in one line."""

from __future__ import annotations

from html import unescape

import pytest

from jupyter_stax.kernel.api import Workflow
from jupyter_stax.kernel.picker import NO_IMAGE, Picker
from jupyter_stax.service import LocalService


@pytest.fixture
def workflow() -> Workflow:
    wf = Workflow("form")
    wf.step("first", "echo first {{n}}", ntasks=1)
    wf.step("second", "echo second $SLURM_NTASKS", after="first")
    wf.step("other", "echo other")
    return wf


def test_cluster_info_and_images(svc: LocalService, workflow: Workflow) -> None:
    p = Picker(workflow, svc)
    p.loading.result(30)
    assert p.cluster.options == ("local", "slurm")
    assert "scheduler <b>local</b>" in p.cluster_info.value
    assert "reading" not in p.cluster_info.value and "reading" not in p.images_info.value
    assert p.image.options[0] == NO_IMAGE and p.images_info.value
    p.cluster.value = "slurm"
    p.loading.result(30)
    info = p.cluster_info.value
    assert "scheduler <b>slurm</b>" in info and "queue <b>debug</b>" in info
    assert "walltime <b>00:10:00</b>" in info
    p.close()


@pytest.mark.slurm
def test_live_numbers_of_the_slurm_cluster(
    svc: LocalService, workflow: Workflow, slurm: str
) -> None:
    p = Picker(workflow, svc)
    p.cluster.value = "slurm"
    p.loading.result(30)
    info = p.cluster_info.value
    assert "now: nodes 2 idle, 0 allocated, 0 unavailable of 2; my jobs" in info or (
        "now: nodes " in info and " of 2; my jobs " in info
    )
    p.close()


def test_submit_with_defaults(svc: LocalService, workflow: Workflow) -> None:
    seen = []
    p = Picker(workflow, svc, on_submit=seen.append)
    p.loading.result(30)
    p.ntasks.value = 2
    p.time.value = "00:02:00"
    p.params.value = "n=3\n\n"
    p.steps.value = ("second",)
    ex = p.submit()
    assert seen == [ex] and p.execution is ex
    steps = {s.name: s for s in ex.model.workflow.steps}
    assert set(steps) == {"first", "second"}  # "second" and what it needs, not "other"
    assert steps["first"].resources.ntasks == 1  # the step's own value wins
    assert steps["second"].resources.ntasks == 2
    assert steps["second"].resources.time == "00:02:00"
    assert ex.model.params == {"n": 3}
    ex.wait(60)
    assert ex.logs("first") == "first 3\n"
    assert "submitted " + ex.id in p.message.value
    # the notebook's workflow itself is unchanged
    assert workflow["second"].resources.ntasks is None
    p.close()


def test_bad_input_is_one_line(svc: LocalService, workflow: Workflow) -> None:
    p = Picker(workflow, svc)
    p.loading.result(30)
    before = len(svc.list(limit=100)[0])
    p.params.value = "n 3"
    p._clicked()
    assert "parameters, line 1: expected NAME=VALUE, got 'n 3'" in unescape(p.message.value)
    p.params.value = ""
    p._clicked()
    assert "uses {{n}} but no value is given" in p.message.value
    p.params.value = "n=1"
    p.time.value = "soon"
    p._clicked()
    assert "time" in p.message.value and not p.submit_button.disabled
    assert len(svc.list(limit=100)[0]) == before
    p.close()
