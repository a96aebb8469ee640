"""Pre-flight: ``patches.preflight``, the pre-flight record signed into the target.

``{"result": "passed"|"skipped", "kernel": str, "at": RFC3339}`` (issue 14);
null for patches published before pre-flight existed.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("preflight", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.drop_column("preflight")
