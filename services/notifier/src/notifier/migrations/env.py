from alembic import context

from mm_shared.db import run_migrations_online

run_migrations_online(context, schema="notifier")
