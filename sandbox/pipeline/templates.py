"""Running an approved template: its parameters checked against the schema the departments
approved, then the job submitted like any other, with the template as its origin.

A run needs no new review, and nothing else is waived: the contract, its scope and quotas,
the price, the release gate and the log all apply as to a job written by hand. Parameters the
schema refuses are refused before anything is recorded or reserved: such a run costs nothing.
"""

from __future__ import annotations

from typing import Any

from operators.roles import Role
from sandbox.context import Context
from sandbox.language.params import parse_schema
from sandbox.pipeline import submission
from sandbox.records import templates
from sandbox.records.principals import Actor, require


def run(
    ctx: Context,
    actor: Actor,
    template_id: str,
    contract_id: str,
    params: dict[str, Any] | None = None,
    version: int | None = None,
    idempotency_key: str | None = None,
    wait: bool = False,
) -> dict[str, Any]:
    """Run the operator's own template (`version`, else its latest approved one) under
    `contract_id`; returns the job as `GET /v1/jobs/{id}` shows it."""
    require(actor, Role.operator)
    with ctx.reading() as s:
        v = templates.runnable(s, actor, template_id, version)
        code, number, schema = v.code, v.version, v.params_schema
    checked = parse_schema(schema).check(params or {})
    req = submission.JobRequest(
        contract_id=contract_id, code=code, params=checked, idempotency_key=idempotency_key
    )
    origin = submission.Origin(template_id, number)
    return submission.submit(ctx, actor, req, wait, origin=origin)
