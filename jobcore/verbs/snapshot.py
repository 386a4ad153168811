"""snapshot: a job's state and output as they are now, without waiting or changing anything."""

from __future__ import annotations

from ..inputs import SnapshotInput
from ..payloads import Snapshot, SnapshotPayload
from ..supervisor import records
from ._context import Context
from ._observe import backend_fields, capped_max_bytes, events, fitted_payload


def snapshot(ctx: Context, inp: SnapshotInput) -> SnapshotPayload:
    max_bytes, lowered = capped_max_bytes(inp.max_bytes)
    jd = ctx.store.open(inp.job_id)
    meta = jd.read_meta()
    state = jd.observed_state()
    found_events = events(jd)
    slurm = backend_fields(jd, state)

    def build(snap: Snapshot) -> SnapshotPayload:
        return SnapshotPayload(
            job_id=jd.job_id,
            state=records.status(state),
            command=meta["command"],
            cwd=meta["cwd"],
            tags=meta["tags"],
            created_at=meta["created_at"],
            started_at=records.started_at(state),
            updated_at=state["updated_at"],
            stdout_log_path=jd.stdout_path,
            stderr_log_path=jd.stderr_path,
            full_log_path=jd.full_path,
            events=found_events,
            snapshot=snap,
            lowered_to=lowered,
            **slurm,
            **records.end_fields(state),
        )

    return fitted_payload(
        jd,
        build,
        ctx.budget_bytes,
        inp.tail_lines,
        max_bytes,
        stdout_offset=inp.stdout_offset,
        stderr_offset=inp.stderr_offset,
        head_lines=inp.head_lines,
    )
