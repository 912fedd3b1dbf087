from pathlib import Path

import pytest

from sandbox.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_readme(name: str) -> None:
    assert f"`SANDBOX_{name.upper()}`" in README


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_THRESHOLD_L3", "25")
    monkeypatch.setenv("SANDBOX_EXECUTOR", "local")
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.thresholds["L3"] == 25
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'sandbox.db').resolve()}"


def test_an_invalid_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_EXECUTOR", "threads")
    with pytest.raises(ValueError):
        Settings()


def test_ray_address_falls_back_to_ray_s_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert Settings().resolved_ray_address == "ray://head:10001"


def test_review_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().review_level_set == frozenset({"L4"})
    assert (Settings().reviewers, Settings().reviewers_l4, Settings().review_max_cells) == (1, 2, 0)
    monkeypatch.setenv("SANDBOX_REVIEW_LEVELS", "L3, L4")
    monkeypatch.setenv("SANDBOX_REVIEWERS_L4", "3")
    s = Settings()
    assert s.review_level_set == frozenset({"L3", "L4"})
    assert s.reviewers_l4 == 3
    monkeypatch.setenv("SANDBOX_REVIEW_LEVELS", "")
    assert Settings().review_level_set == frozenset()
    monkeypatch.setenv("SANDBOX_REVIEW_LEVELS", "L5")
    with pytest.raises(ValueError):
        Settings()
