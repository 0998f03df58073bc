"""What each user told the persona about themselves, kept per (user, persona): found by
rules in what they write (``extract``), told back in the right person (``person``), stored,
recalled and forgotten (``store``)."""
