"""Helpers shared by the tests: spec builders, polling, run lookups, ports, `overseer` subprocesses, the bot."""
