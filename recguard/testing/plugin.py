"""recguard's pytest plugin (auto-loaded through the ``pytest11`` entry point).

Options:
    --recguard-seeds N     run every ``recguard.assert_robust`` check with N seeds (0..N-1)
    --recguard-report DIR  write each check's JSON + HTML report to DIR (named after the test)
Marker:
    @pytest.mark.recguard  robustness checks (slower); tests that use the ``recguard``
                           fixture get it automatically. Select with ``-m recguard``, skip
                           with ``-m "not recguard"``.
Fixtures:
    recguard          assertion helpers bound to the options above, plus ``.data`` and ``.make_victim``
    recguard_data     a tiny seeded dataset (:func:`recguard.testing.tiny_dataset`)
    recguard_victim   factory: ``recguard_victim("sasrec", epochs=3)`` -> an unfitted fast victim
"""

from __future__ import annotations

import pytest

FAST = dict(hidden=16, max_len=16, epochs=5, batch_size=32, eval_every=1, patience=0)


def pytest_addoption(parser):
    group = parser.getgroup("recguard", "recguard robustness checks")
    group.addoption("--recguard-seeds", type=int, default=None, metavar="N",
                    help="seeds for every recguard.assert_robust check (overrides the test's own)")
    group.addoption("--recguard-report", default=None, metavar="DIR",
                    help="write each recguard check's JSON + HTML report to DIR")


def pytest_configure(config):
    config.addinivalue_line("markers", "recguard: recguard robustness checks (slower; select with -m recguard)")
    seeds = config.getoption("--recguard-seeds", None)
    if seeds is not None and seeds < 1:
        raise pytest.UsageError(f"--recguard-seeds must be >= 1, got {seeds}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "recguard" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.recguard)


def make_fast_victim(arch: str = "sasrec", **overrides):
    """An unfitted victim with settings small enough for unit tests (seconds on a CPU)."""
    from ..victims import make_victim

    cfg = {**FAST, **overrides}
    if arch != "gru4rec":
        cfg.setdefault("num_heads", 1)
    return make_victim(arch, **cfg)


class RecguardHelper:
    """What the ``recguard`` fixture gives a test: the assertions with the session's options applied."""

    def __init__(self, *, seeds: int | None, report: str | None, name: str, data):
        self.seeds, self.report, self.name, self.data = seeds, report, name, data
        self._n = 0

    def _name(self, check: str) -> str:
        self._n += 1
        return f"{self.name}-{check}-{self._n}"

    def make_victim(self, arch: str = "sasrec", **overrides):
        return make_fast_victim(arch, **overrides)

    def assert_robust(self, train_fn, data=None, **kw):
        from .assertions import assert_robust

        if self.seeds is not None:
            kw["seeds"] = self.seeds
        return assert_robust(train_fn, self.data if data is None else data, report=self.report, name=self._name("robust"), **kw)

    def assert_extraction_resistant(self, victim, data=None, **kw):
        from .assertions import assert_extraction_resistant

        return assert_extraction_resistant(victim, self.data if data is None else data, report=self.report,
                                           name=self._name("extraction"), **kw)

    def assert_clean_quality(self, victim, data=None, **kw):
        from .assertions import assert_clean_quality

        return assert_clean_quality(victim, self.data if data is None else data, report=self.report,
                                    name=self._name("quality"), **kw)


@pytest.fixture(scope="session")
def recguard_data():
    from ._data import tiny_dataset

    return tiny_dataset()


@pytest.fixture
def recguard_victim():
    return make_fast_victim


@pytest.fixture
def recguard(request, recguard_data):
    cfg = request.config
    return RecguardHelper(seeds=cfg.getoption("--recguard-seeds", None), report=cfg.getoption("--recguard-report", None),
                          name=request.node.name, data=recguard_data)
