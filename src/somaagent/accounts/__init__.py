"""Accounts: API keys, the principal a key stands for, and the usage and monthly budgets
charged to keys (see ``README.md``)."""

from __future__ import annotations
