"""Hypothesis-generated parameter values go through the whole path (workflow -> job wrapper ->
scheduler -> step) and arrive literally, never executed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_stax.engine.engine import Engine

from ..core.test_params import NASTY
from .conftest import arun

VALUE = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
)
SCRIPT = (
    "printf '%s' {{v}} > plain\n"
    "printf '%s' \"[{{v}}]\" > dq\n"
    "printf '%s' 'sq:{{v}}' > sq\n"
    "cat > hd <<EOF\n{{v}}\nEOF\n"
)


def _run(cluster: str, values: list[str], engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "hostile",
        "steps": [
            {"name": f"s{i}", "params": {"v": v}, "run": SCRIPT} for i, v in enumerate(values)
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    for i, v in enumerate(values):
        s = ex.step(f"s{i}")  # type: ignore[attr-defined]
        d = Path(s.directory)
        assert s.state.value == "completed", (v, s.reason)
        assert (d / "plain").read_bytes() == v.encode("utf-8", "surrogateescape")
        assert (d / "dq").read_bytes() == f"[{v}]".encode()
        assert (d / "sq").read_bytes() == f"sq:{v}".encode()
        assert (d / "hd").read_bytes() == f"{v}\n".encode()
    assert not list(Path(ex.work_dir).rglob("PWNED"))  # type: ignore[attr-defined]


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(VALUE, min_size=8, max_size=8))
def test_generated_values_arrive_literally(
    cluster: str, engine_factory: Callable[..., Engine], values: list[str]
) -> None:
    _run(cluster, values, engine_factory)
