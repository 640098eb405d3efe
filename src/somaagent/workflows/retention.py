"""Upload retention: deleting an upload, and the sweep that removes expired ones, never one
that a live run still needs.

A run names uploads in its input (``input.uploads``) and reads their files batch by batch,
possibly long after it was accepted (queued behind others, or resumed after a crash). So an
upload is removed only when no queued or running run names it: the live runs are read from
the engine (DBOS statuses ``ENQUEUED``, ``DELAYED``, ``PENDING``; PENDING runs of another
SomaAgent version included) right before the delete. A finished, failed or cancelled run does
not hold its uploads: resuming or forking it after they are gone fails with a 422-like step
error naming the upload.

Expiry: a new run refuses an upload older than the time to live (``UploadStore.check``), and
the sweep removes it :data:`GRACE` later, so a run accepted just before the upload expired has
been enqueued (and is seen as live) before its upload can go. The sweep runs when the engine
starts and then every :func:`sweep_interval`; every gateway process sweeps, which is safe (a
delete of what is already gone deletes nothing).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dbos import DBOS

from somaagent.db import utcnow
from somaagent.errors import ConflictError, NotFoundError
from somaagent.workflows import _convert as conv
from somaagent.workflows.uploads import UploadStore

if TYPE_CHECKING:
    from somaagent.workflows.dbos import DBOSEngine

__all__ = ["GRACE", "LIVE", "UploadRetention", "sweep_interval"]

log = logging.getLogger("somaagent.workflows")

LIVE = ["ENQUEUED", "DELAYED", "PENDING"]
"""Engine statuses of runs that may still read their uploads."""
GRACE = timedelta(minutes=10)
"""How long after expiry the sweep waits (runs accepted just before it are enqueued by then)."""


def sweep_interval(ttl: timedelta) -> float:
    """Seconds between sweeps: a quarter of the time to live, between 1 minute and 1 hour."""
    return min(3600.0, max(60.0, ttl.total_seconds() / 4))


class UploadRetention:
    """Deletes uploads for a tenant (refusing one a live run names) and sweeps expired ones."""

    def __init__(self, engine: DBOSEngine, store: UploadStore) -> None:
        self.engine = engine
        self.store = store

    async def live_uploads(self, tenant: str | None = None) -> dict[tuple[str, str], str]:
        """``(tenant, upload id)`` named by a queued or running run, each with one such run."""
        if not self.engine.is_open:
            if not await self.engine.may_hold_runs():
                return {}  # no workflow database yet: no run at all
            await self.engine.ensure_open()
        rows = await DBOS.list_workflows_async(
            status=LIVE, user=tenant, load_input=True, load_output=False
        )
        live: dict[tuple[str, str], str] = {}
        for row in rows:
            owner = row.authenticated_user
            if not owner or not str(row.name).startswith(conv.WORKFLOW_PREFIX):
                continue
            uploads = _uploads_named(conv.run_of(row, owner, self.engine.app_version).input)
            for upload_id in uploads:
                live.setdefault((owner, upload_id), conv.public_id(owner, row.workflow_id))
        return live

    async def delete(self, tenant: str, upload_id: str) -> None:
        """Delete the tenant's upload now.

        Raises:
            NotFoundError: no such upload for this tenant (another tenant's included).
            ConflictError: a queued or running run names it (the 409 names the run).
        """
        if await self.store.get(tenant, upload_id) is None:
            raise NotFoundError(f"no upload {upload_id!r}")
        run = (await self.live_uploads(tenant)).get((tenant, upload_id))
        if run is not None:
            raise ConflictError(
                f"upload {upload_id!r} is still needed by run {run!r}, which has not finished; "
                "cancel the run or wait for it to end, then delete the upload"
            )
        await self.store.delete(tenant, upload_id)

    async def sweep(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """Remove the uploads past their time to live and the grace period that no live run
        names; the ``(tenant, upload id)`` removed."""
        if self.store.ttl is None:
            return []
        cutoff = (now or utcnow()) - self.store.ttl - GRACE
        removed: list[tuple[str, str]] = []
        while True:
            expired = [e for e in await self.store.older_than(cutoff) if e not in removed]
            if not expired:
                return removed
            live = await self.live_uploads()
            kept = 0
            for tenant, upload_id in expired:
                if (tenant, upload_id) in live:
                    kept += 1
                    continue
                await self.store.delete(tenant, upload_id)
                removed.append((tenant, upload_id))
            if kept == len(expired):
                return removed  # the rest are all needed by live runs

    async def run_forever(self) -> None:
        """Sweep now, then every :func:`sweep_interval` (a failed sweep is logged, retried)."""
        if self.store.ttl is None:
            return
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("removed %d expired workflow uploads", len(removed))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the workflow upload sweep failed", exc_info=True)
            await asyncio.sleep(sweep_interval(self.store.ttl))


def _uploads_named(run_input: dict[str, Any] | None) -> list[str]:
    uploads = (run_input or {}).get("uploads")
    if not isinstance(uploads, list):
        return []
    return [u for u in uploads if isinstance(u, str)]
