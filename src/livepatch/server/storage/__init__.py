"""Persistent state of the service: ORM models, engine setup and migrations."""
