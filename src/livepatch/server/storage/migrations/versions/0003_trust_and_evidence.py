"""Trust and evidence: report health and evidence, the reporting token, clone
detection, revocation.

- ``reports.health`` / ``reports.evidence``: the verdict after the health
  window and the kernel-log excerpt behind it (issue 14).
- ``reports.token_id``: the token the machine held when it reported, so each
  token's votes in a stage are capped at its machine limit however often its
  machines de-enrol and enrol again (issue 16).
- ``machines.machine_id`` is no longer unique: enrolling an existing id
  without proof makes a second record flagged ``duplicate`` (a cloned image
  or an impostor), never a takeover.
- ``patches.revoked`` / ``patches.revoke_reason``: fleet-wide rollback.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("evidence", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("token_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("duplicate", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_constraint(batch_op.f("uq_machines_machine_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_machines_machine_id"), ["machine_id"], unique=False)
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revoke_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.drop_column("revoke_reason")
        batch_op.drop_column("revoked")
    op.execute("DELETE FROM machines WHERE duplicate")
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machines_machine_id"))
        batch_op.create_unique_constraint(batch_op.f("uq_machines_machine_id"), ["machine_id"])
        batch_op.drop_column("duplicate")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("token_id")
        batch_op.drop_column("evidence")
        batch_op.drop_column("health")
