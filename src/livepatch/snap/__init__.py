"""The snap's own logic: hooks, health checks, the notifier's autostart, the build.

The executables in the repository's ``hooks/`` directory are one-line shell
scripts that run ``python -m livepatch.snap.hooks HOOK``; everything they do
lives here, so it is unit tested like the rest of the client. ``build``
assembles the snap the way ``snapcraft pack`` does (``make snap``).
"""
