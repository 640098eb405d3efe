"""The one tenant-naming scheme for store collections keeps the names stores already hold."""

from __future__ import annotations

from somaagent.memory.collections import store_name
from somaagent.memory.conversations import conversation_collection
from somaagent.memory.naming import (
    collection_store_name,
    conversation_store_name,
    tenant_store_name,
)


def test_names_are_those_the_stores_already_hold() -> None:
    # Figures from the two schemes this one replaced: "m_" + sha256(tenant NUL name)[:40] and
    # "conv_" + sha256(tenant)[:40]; a change would orphan every stored collection.
    assert collection_store_name("default", "kb") == "m_6e7a23ae1b9afc8142ac79d90188094bcff54761"
    assert conversation_store_name("default") == "conv_37a8eec1ce19687d132fe29051dca629d164e2c4"
    assert store_name is collection_store_name
    assert conversation_collection is conversation_store_name


def test_tenants_and_names_never_share_a_store_name() -> None:
    names = {
        collection_store_name("acme", "kb"),
        collection_store_name("acme", "kb2"),
        collection_store_name("globex", "kb"),
        collection_store_name("acme\x00kb", ""),
        conversation_store_name("acme"),
        tenant_store_name("m", "acme"),
    }
    assert len(names) == 6
    assert all(len(name) <= 64 for name in names)  # the column is String(64)
