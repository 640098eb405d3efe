"""Fixtures shared by every test folder."""

from __future__ import annotations

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.memory_fixtures", "tests._skips"]
