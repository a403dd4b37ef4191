"""Sync engine: pushes ledger events to each mailing tool and pulls their opt-outs back.

Empty for now: the connectors and the engine come with the sync issue.
"""
