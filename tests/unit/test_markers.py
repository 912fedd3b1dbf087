"""The `ray` marker is given by tests/conftest.py, so that `-m "not ray"` leaves out every test
that needs a local Ray, however it asks for one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import conftest
import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def _collected(*args: str) -> set[str]:
    # A process of its own: collecting the real files here would import them into this run.
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return {line.split("::")[1] for line in r.stdout.splitlines() if "::" in line}


def test_the_suites_ray_tests_are_marked_and_its_local_ones_are_not() -> None:
    files = ("tests/system/test_http_jobs.py", "tests/unit/engine/test_engine_cache.py")
    marked = _collected("-m", "ray", *files)
    # Through the `world` fixture, and through a module's usefixtures("ray_local").
    assert "test_ray_job_releases_suppressed_table_and_downloads" in marked
    assert "test_a_bare_count_reads_no_columns_and_counts_every_time" in marked
    # Through `local_world`, which runs jobs in-process.
    assert "test_job_without_wait_finishes_later" not in marked


def test_every_way_of_asking_for_ray_local_is_marked(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers = ray: needs a local Ray instance\n")
    pytester.makepyfile(
        test_some="""
        import pytest

        @pytest.fixture(scope="session")
        def ray_local():
            pass

        @pytest.fixture
        def cluster(ray_local):
            pass

        def test_direct(ray_local):
            pass

        def test_through_a_fixture(cluster):
            pass

        @pytest.mark.usefixtures("ray_local")
        def test_by_usefixtures():
            pass

        def test_without_ray(tmp_path):
            pass
    """
    )
    hook = SimpleNamespace(pytest_collection_modifyitems=conftest.pytest_collection_modifyitems)
    pytester.runpytest("-m", "ray", plugins=[hook]).assert_outcomes(passed=3, deselected=1)
    rest = pytester.runpytest("-m", "not ray", "-v", plugins=[hook])
    rest.assert_outcomes(passed=1, deselected=3)
    rest.stdout.fnmatch_lines(["*::test_without_ray PASSED*"])
