"""Model providers, the model registry and (later) the router. See README.md here."""
