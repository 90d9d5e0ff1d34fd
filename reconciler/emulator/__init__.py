"""A Graph-compatible local tenant: HTTPS server, Entra-like sign-in, and the Graph app (SPEC section 6)."""
