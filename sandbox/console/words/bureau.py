"""The bureau's pages: datasets, principals, prices, revenue."""

ZH: dict[str, str] = {}

EN: dict[str, str] = {}
