"""The record constants agree with the payload and input models that restate them."""

from __future__ import annotations

from typing import get_args

from jobcore import inputs, payloads
from jobcore.supervisor import records


def test_the_job_state_literal_is_the_list_of_job_states() -> None:
    assert get_args(payloads.JobState) == records.JOB_STATES
    assert records.TERMINAL_STATES.issubset(records.JOB_STATES)


def test_the_list_filter_takes_every_job_state() -> None:
    field = inputs.ListInput.model_fields["state"]
    assert set(get_args(field.annotation)) == {payloads.JobState, type(None)}


def test_the_payload_schema_version_is_the_records_one() -> None:
    assert get_args(payloads.Payload.model_fields["schema_version"].annotation) == (records.SCHEMA_VERSION,)


def test_end_fields_read_an_end_record_as_the_payloads_name_them() -> None:
    state = records.state_record(
        "j1", "killed", signal_name="SIGTERM", duration_ms=7, finished_at="2026-01-01T00:00:00.000Z", reason="killed"
    )
    assert records.is_ended(state) and records.status(state) == "killed"
    assert records.end_fields(state) == {
        "exit_code": None,
        "signal": "SIGTERM",
        "finished_at": "2026-01-01T00:00:00.000Z",
        "duration_ms": 7,
        "reason": "killed",
        "write_errors": None,
    }
