"""Records: typed ORM models, the session factory, the queries. Knows nothing above it."""
