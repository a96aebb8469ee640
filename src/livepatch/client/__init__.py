"""The livepatch client: enrolment, check-ins, verified apply, status.

Modules, each with one job: ``config`` (settings), ``store`` (atomic state
files), ``state`` (the persisted record), ``transitions`` (pure state
changes), ``planner`` (pure: which patch to apply), ``schedule`` (pure:
when to check next), ``status`` and ``render`` (the status document and its
formats), ``api`` (patch service HTTP client), ``metadata`` (signed update
metadata), ``kernelport`` (the running kernel), ``check`` (one check-in:
refresh, plan, verify, load, report), ``control`` (the daemon's local
socket), ``daemon`` (the long-running service), ``commands`` (what the
``livepatch`` command does). Importing this package imports nothing else.
"""
