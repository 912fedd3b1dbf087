"""What the service keeps in its database: principals, contracts, money, privacy
budgets, release history, dataset registrations, flags, and listings for inspection."""
