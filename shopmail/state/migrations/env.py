"""Alembic environment for Shopmail's state DB (URL passed in by `shopmail.state.state_db.upgrade`)."""

from alembic import context
from sqlalchemy import create_engine

from shopmail.state.schema import metadata

url = context.config.get_main_option("sqlalchemy.url")

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, hide_parameters=True)  # no values in migration errors
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
