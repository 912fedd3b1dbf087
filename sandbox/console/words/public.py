"""Fees, the public register and the log, for everyone."""

ZH: dict[str, str] = {}

EN: dict[str, str] = {}
