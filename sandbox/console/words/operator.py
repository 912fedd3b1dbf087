"""An operator's pages: contracts, jobs, bills, budget."""

ZH: dict[str, str] = {}

EN: dict[str, str] = {}
