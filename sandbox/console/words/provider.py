"""A department's pages: requests to approve, how its data is used."""

ZH: dict[str, str] = {}

EN: dict[str, str] = {}
