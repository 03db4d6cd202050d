"""The HTTP face: FastAPI app factory, one router per domain, error mapping."""
