"""A missing system program skips its tests, saying why, except where the run requires the
system packages (make test as root): there it fails them."""

import pytest

from tests.conftest import missing_system_program


def test_a_missing_program_skips_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTI_REQUIRE_SYSTEM_PACKAGES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server not found"):
        missing_system_program("redis-server not found")


def test_a_missing_program_fails_when_the_packages_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FTI_REQUIRE_SYSTEM_PACKAGES", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium not found.*make install"):
        missing_system_program("chromium not found")
