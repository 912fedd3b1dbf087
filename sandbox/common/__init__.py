"""Small pieces every layer may use: a bounded cache, the clock, value hashing."""
