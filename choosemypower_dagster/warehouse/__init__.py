"""The warehouse: schema, migrations, connections, reads, writes, the response cache, roll-ups.

It knows nothing of Dagster: every function takes a SQLAlchemy engine or connection.
"""
