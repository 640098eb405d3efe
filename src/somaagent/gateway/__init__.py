"""The SomaAgent gateway: a FastAPI service. Needs the ``server`` extra."""
