"""The tamper-evident audit log.

``chain`` (the canonical form, hashing and verification of entries) and ``checkpoint`` (signed
statements of the head) are pure: no Flask, no database, so an auditor can re-implement or
reuse them anywhere. ``entry`` is what an action records; ``append``, ``verification`` and
``retention`` work the log in the database session; ``events``, ``unusual``, ``access_report``
and ``export`` answer auditors' questions.
"""
