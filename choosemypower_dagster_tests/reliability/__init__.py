"""Reliability suite (issue 9): API faults, bad input, crashes, bad configuration, secrets.

Every test runs against the sandbox API over real HTTP on loopback and a real warehouse
(SQLite and PostgreSQL), and is marked `reliability`. `docs/reliability.md` lists the cases.
"""
