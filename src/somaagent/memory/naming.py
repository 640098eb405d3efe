"""The one scheme for naming a tenant's collections in the vector store and keyword index.

Back-end collection names are shared by every tenant, so each is a hash of the tenant and what
it names, under a prefix for its kind: tenants never share one, and another tenant's collection
is simply not found.
"""

from __future__ import annotations

import hashlib

__all__ = ["collection_store_name", "conversation_store_name", "tenant_store_name"]


def tenant_store_name(prefix: str, tenant: str, *parts: str) -> str:
    """``<prefix>_`` + 40 hex digits of SHA-256 over the tenant and ``parts``, NUL-separated."""
    key = "\x00".join((tenant, *parts))
    return f"{prefix}_" + hashlib.sha256(key.encode()).hexdigest()[:40]


def collection_store_name(tenant: str, name: str) -> str:
    """The store name of ``tenant``'s collection ``name``."""
    return tenant_store_name("m", tenant, name)


def conversation_store_name(tenant: str) -> str:
    """The store name of ``tenant``'s conversation-message collection."""
    return tenant_store_name("conv", tenant)
