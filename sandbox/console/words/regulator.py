"""The regulator's pages: contracts, jobs, reports, the log."""

ZH: dict[str, str] = {}

EN: dict[str, str] = {}
