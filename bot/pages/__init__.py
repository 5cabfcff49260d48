"""A page per run, served by `overseer serve` behind signed, expiring links.

    links    signing and checking the links (HMAC-SHA256 with OVERSEER_SECRET_KEY)
    views    what a page shows, read from the database as redacted text
    routes   GET /runs and GET /runs/{id}, rendered from templates/ with the security headers
"""
